# The two commands of the README, plus the benchmark.
.PHONY: demo test bench setup

demo:
	bash scripts/demo.sh

test:
	bash tests/run.sh

setup:
	bash scripts/setup.sh

# make bench ARGS="--extension pgivf,vector --lists 100,250"; see benches/README.md.
bench:
	bash benches/run.sh $(ARGS)
