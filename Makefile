# Chaos test of real worker processes (internal/chaos). `go test ./...` runs its CI size (300 tasks,
# 20 s of SIGKILLs); these targets run it on its own, and at full size. Pass more flags with
# CHAOS_FLAGS, e.g. make chaos-full CHAOS_FLAGS="-chaos.logs /tmp/chaos-logs -chaos.verbose".

CHAOS_FLAGS ?=

.PHONY: chaos chaos-full

chaos:
	go test ./internal/chaos -run TestChaos -count=1 -v $(CHAOS_FLAGS)

chaos-full:
	go test ./internal/chaos -run TestChaos -count=1 -v -timeout 20m -chaos.tasks 2000 -chaos.duration 60s $(CHAOS_FLAGS)
