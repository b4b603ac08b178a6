package org.cellvq.neo4jserver;

import java.io.IOException;
import java.io.InputStream;
import java.io.UncheckedIOException;
import java.net.InetAddress;
import java.net.InetSocketAddress;
import java.net.ServerSocket;
import java.net.Socket;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.Comparator;
import java.util.Map;
import java.util.stream.Stream;
import org.neo4j.configuration.GraphDatabaseSettings;
import org.neo4j.configuration.connectors.BoltConnector;
import org.neo4j.configuration.connectors.ConnectorPortRegister;
import org.neo4j.configuration.connectors.ConnectorType;
import org.neo4j.configuration.helpers.SocketAddress;
import org.neo4j.dbms.api.DatabaseManagementService;
import org.neo4j.dbms.api.DatabaseManagementServiceBuilder;
import org.neo4j.io.ByteUnit;
import org.neo4j.kernel.internal.GraphDatabaseAPI;

/**
 * A Neo4j 5.26 DBMS for the CellVQ tests: embedded, Bolt on loopback, auth on.
 *
 * <p>Usage: {@code java -cp CLASSPATH org.cellvq.neo4jserver.TestServer [--home DIR] [--port N]}
 *
 * <ul>
 *   <li>The password of user {@code neo4j} comes from the environment variable
 *       {@code CELLVQ_NEO4J_PASSWORD} (required); it is never printed.
 *   <li>{@code --home DIR}: the DBMS home (databases under {@code DIR/data}); kept at exit, so a
 *       second start on the same home reopens the databases. Without it a temporary home is used
 *       and deleted at exit.
 *   <li>{@code --port N}: the Bolt port on 127.0.0.1; default 0: a free port (the advertised
 *       address is the real port, so {@code neo4j://} routing works too).
 * </ul>
 *
 * <p>Prints {@code READY <port>} once Bolt accepts connections. Shuts down cleanly when its
 * standard input is closed or on SIGTERM / SIGINT.
 */
public final class TestServer {
    private static final String PASSWORD_ENV = "CELLVQ_NEO4J_PASSWORD";
    private static final String PASSWORD_MARKER = ".cellvq-password-set";

    private TestServer() {}

    public static void main(String[] args) throws Exception {
        String password = System.getenv(PASSWORD_ENV);
        if (password == null || password.isEmpty()) {
            fail("set " + PASSWORD_ENV + " to the password the neo4j user should get");
        }
        Path home = null;
        int port = 0;
        for (int i = 0; i < args.length; i++) {
            switch (args[i]) {
                case "--home" -> home = Path.of(args[++i]).toAbsolutePath();
                case "--port" -> port = Integer.parseInt(args[++i]);
                default -> fail("unknown argument " + args[i] + "; use --home DIR and/or --port N");
            }
        }
        boolean temporary = home == null;
        Path dir = temporary ? Files.createTempDirectory("cellvq-neo4j-") : Files.createDirectories(home);
        long t0 = System.nanoTime();
        DatabaseManagementService dbms = start(dir, port == 0 ? freePort() : port);
        Runtime.getRuntime().addShutdownHook(new Thread(() -> stop(dbms, dir, temporary), "cellvq-neo4j-stop"));
        setPassword(dbms, dir, password);
        int bolt = boltPort(dbms);
        awaitBolt(bolt);
        System.out.printf("READY %d (started in %.1f s)%n", bolt, (System.nanoTime() - t0) / 1e9);
        System.out.flush();
        waitForStdinClose(System.in);
        System.exit(0);
    }

    private static DatabaseManagementService start(Path home, int port) {
        return new DatabaseManagementServiceBuilder(home)
                .setConfig(BoltConnector.enabled, true)
                .setConfig(BoltConnector.listen_address, new SocketAddress("127.0.0.1", port))
                .setConfig(BoltConnector.advertised_address, new SocketAddress("127.0.0.1", port))
                .setConfig(BoltConnector.encryption_level, BoltConnector.EncryptionLevel.DISABLED)
                .setConfig(GraphDatabaseSettings.auth_enabled, true)
                .setConfig(GraphDatabaseSettings.pagecache_memory, ByteUnit.mebiBytes(512))
                .setConfig(GraphDatabaseSettings.preallocate_logical_logs, false)
                .build();
    }

    /** Give user neo4j the password (once per home: Neo4j refuses to set the same password again). */
    private static void setPassword(DatabaseManagementService dbms, Path home, String password) throws IOException {
        Path marker = home.resolve(PASSWORD_MARKER);
        if (Files.exists(marker)) {
            return;
        }
        dbms.database(GraphDatabaseSettings.SYSTEM_DATABASE_NAME)
                .executeTransactionally(
                        "ALTER USER neo4j SET PASSWORD $password CHANGE NOT REQUIRED", Map.of("password", password));
        Files.writeString(marker, "");
    }

    private static int freePort() throws IOException {
        try (ServerSocket socket = new ServerSocket(0, 1, InetAddress.getLoopbackAddress())) {
            return socket.getLocalPort();
        }
    }

    private static int boltPort(DatabaseManagementService dbms) {
        GraphDatabaseAPI db = (GraphDatabaseAPI) dbms.database(GraphDatabaseSettings.SYSTEM_DATABASE_NAME);
        ConnectorPortRegister ports = db.getDependencyResolver().resolveDependency(ConnectorPortRegister.class);
        return ports.getLocalAddress(ConnectorType.BOLT).getPort();
    }

    private static void awaitBolt(int port) throws InterruptedException {
        for (int attempt = 0; attempt < 600; attempt++) {
            try (Socket socket = new Socket()) {
                socket.connect(new InetSocketAddress("127.0.0.1", port), 1000);
                return;
            } catch (IOException notYet) {
                Thread.sleep(100);
            }
        }
        fail("Bolt did not accept connections on 127.0.0.1:" + port + " within 60 s");
    }

    private static void waitForStdinClose(InputStream in) {
        byte[] buffer = new byte[256];
        try {
            while (in.read(buffer) >= 0) {
                // input is ignored; end of input means the test session is over
            }
        } catch (IOException closed) {
            // a broken pipe ends the session too
        }
    }

    private static void stop(DatabaseManagementService dbms, Path dir, boolean temporary) {
        dbms.shutdown();
        if (temporary) {
            deleteTree(dir);
        }
        System.out.println("STOPPED");
        System.out.flush();
    }

    private static void deleteTree(Path dir) {
        try (Stream<Path> paths = Files.walk(dir)) {
            paths.sorted(Comparator.reverseOrder()).forEach(p -> p.toFile().delete());
        } catch (IOException exc) {
            throw new UncheckedIOException(exc);
        }
    }

    private static void fail(String message) {
        System.err.println("cellvq neo4j test server: " + message);
        System.exit(2);
    }
}
