"""Store backends: embedded LadybugDB and Neo4j, one interface (:class:`base.GraphStore`)."""
