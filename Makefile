# Two commands do all setup on a fresh machine:
#   make demo   — create .venv, install, run the main job on bundled real PBMCs with the embedded DB
#   make test   — create .venv, install (incl. the npm Cypher linter), lint, run the whole test suite
PYTHON ?= python3
VENV   ?= .venv
PY      = $(VENV)/bin/python
STAMP   = $(VENV)/.cellvq-installed
LINTDIR = tests/cypher_lint

.PHONY: install demo test lint bench pretrain pretrain-small clean

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	# PyTorch from PyPI (runs on CPU and CUDA); other CUDA versions: see README "GPU install".
	$(PY) -m pip install -q torch==2.13.0
	$(PY) -m pip install -q -e ".[dev]"
	touch $(STAMP)

install: $(STAMP)

$(LINTDIR)/node_modules/.installed: $(LINTDIR)/package.json
	cd $(LINTDIR) && npm install --no-audit --no-fund --loglevel=error
	touch $@

# The live Neo4j for the tests: Neo4j 5.26 LTS jars from Maven Central + the launcher (tests/neo4j_server).
NEO4JDIR = tests/neo4j_server
$(NEO4JDIR)/target/classpath.txt: $(NEO4JDIR)/pom.xml $(NEO4JDIR)/src/main/java/org/cellvq/neo4jserver/TestServer.java
	cd $(NEO4JDIR) && mvn -q -B package
	touch $@

demo: install
	$(VENV)/bin/cellvq demo --out cellvq_demo

lint: install
	$(VENV)/bin/ruff check foundation cellvq_graph graphdb cellvq tests benchmarks

# CELLVQ_REQUIRE_NEO4J=1: the live Neo4j suite must run (a server that does not start is an error, not a skip)
test: install $(LINTDIR)/node_modules/.installed $(NEO4JDIR)/target/classpath.txt lint
	CELLVQ_REQUIRE_NEO4J=1 $(PY) -m pytest -q tests

# The exact command that produced the shipped checkpoint (foundation/pretrained/cellvq-tiny-human):
# every human raw-count h5ad in ../shared/data, 30% of pbmc3k held out (stratified by cell type, seed 0).
SHARED ?= ../shared/data
pretrain: install
	OMP_NUM_THREADS=1 $(VENV)/bin/cellvq pretrain $(SHARED)/pbmc3k_counts.h5ad \
	  $(SHARED)/celltypist_sample_counts.h5ad $(SHARED)/kang_ifnb_pbmc_subset_counts.h5ad \
	  $(SHARED)/papalexi_thp1_crispr_counts.h5ad --holdout foundation/pretrained/pbmc3k_holdout.tsv \
	  --epochs 12 --lr 3e-4 --contrastive-weight 1.0 --max-cells-per-file 3000 --seed 0 --name cellvq-tiny-human \
	  --no-train-state \
	  --out foundation/pretrained/cellvq-tiny-human
	$(PY) -m foundation.ood foundation/pretrained/cellvq-tiny-human $(SHARED)/pbmc3k_counts.h5ad \
	  $(SHARED)/celltypist_sample_counts.h5ad $(SHARED)/kang_ifnb_pbmc_subset_counts.h5ad \
	  $(SHARED)/papalexi_thp1_crispr_counts.h5ad --holdout foundation/pretrained/pbmc3k_holdout.tsv

# The additional 5.1M-parameter checkpoint (foundation/pretrained/cellvq-small-human; not the default model):
# the same corpus and holdout, preset small-cpu, 4 epochs (~17 min on one thread), then its coarse codes.
pretrain-small: install
	OMP_NUM_THREADS=1 $(VENV)/bin/cellvq pretrain $(SHARED)/pbmc3k_counts.h5ad \
	  $(SHARED)/celltypist_sample_counts.h5ad $(SHARED)/kang_ifnb_pbmc_subset_counts.h5ad \
	  $(SHARED)/papalexi_thp1_crispr_counts.h5ad --holdout foundation/pretrained/pbmc3k_holdout.tsv \
	  --preset small-cpu --epochs 4 --lr 3e-4 --contrastive-weight 1.0 --max-cells-per-file 3000 --seed 0 \
	  --name cellvq-small-human --no-train-state --out foundation/pretrained/cellvq-small-human
	$(PY) -m foundation.codes --checkpoint foundation/pretrained/cellvq-small-human --n-coarse 16

bench: install
	$(PY) benchmarks/foundation.py
	$(PY) benchmarks/graph.py
	$(PY) benchmarks/graphdb.py

clean:
	rm -rf $(VENV) $(LINTDIR)/node_modules cellvq_demo .pytest_cache
