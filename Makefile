# The two commands a new machine needs: `make run` and `make test`.
.PHONY: run test faults bench image stop lint format lock

run:  ## the terminal chat against a local one-node swarm (sets everything up first)
	@scripts/demo.sh

test:  ## the whole test suite against a real swarm, Redis and worker (sets up first)
	@scripts/test.sh

faults:  ## nightly: FAULT_TRIALS trials of each fault (20), FUZZ_EXAMPLES fuzz inputs (10,000), REDIS_FUZZ_ROUNDS rounds of bytes in every Redis key (20)
	@FAULT_TRIALS=$${FAULT_TRIALS:-20} FUZZ_EXAMPLES=$${FUZZ_EXAMPLES:-10000} \
		REDIS_FUZZ_ROUNDS=$${REDIS_FUZZ_ROUNDS:-20} \
		scripts/test.sh tests/test_faults.py tests/test_manager_loss.py tests/test_fuzz.py \
		tests/test_redis_fuzz.py tests/test_failover.py tests/test_swarms.py

bench:  ## benchmarks against the real swarm, Redis and Synapse; writes docs/BENCHMARKS.md
	@scripts/setup.sh && .venv/bin/python -m bench.run

image:  ## the container image, online or offline (TAG=swarmbot:<pyproject.toml's version> by default)
	@scripts/setup.sh && scripts/build-image.sh $(TAG)

stop:  ## stop the Redis and dockerd that `make run` started
	@scripts/stop.sh

lint:  ## ruff, mypy (strict, the whole package), and the import contracts
	@scripts/setup.sh && scripts/lint.sh

lock:  ## renew requirements.lock: the newest versions pyproject.toml allows, pinned
	@scripts/lock.sh

format:
	.venv/bin/ruff format . && .venv/bin/ruff check --fix .
