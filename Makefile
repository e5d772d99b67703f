# Chaos test of real worker processes (internal/chaos), with PostgreSQL's queue (TestChaos) and with
# RabbitMQ's (TestChaosRabbitMQ). `go test ./...` runs their CI size (300 tasks and 20 s of SIGKILLs;
# 150 tasks and 10 s); these targets run it on its own, and at full size. Pass more flags with
# CHAOS_FLAGS, e.g. make chaos-full CHAOS_FLAGS="-chaos.logs /tmp/chaos-logs -chaos.verbose".

CHAOS_FLAGS ?=

.PHONY: chaos chaos-full

chaos:
	go test ./internal/chaos -run TestChaos -count=1 -v $(CHAOS_FLAGS)

chaos-full:
	go test ./internal/chaos -run TestChaos -count=1 -v -timeout 20m -chaos.tasks 2000 -chaos.duration 60s \
		-chaos.rabbitmq-tasks 1000 -chaos.rabbitmq-duration 40s $(CHAOS_FLAGS)
