package main

import (
	"context"
	"time"
)

// riverCooldownsDefault are the River FetchCooldown settings compared: River's default and its
// minimum.
const riverCooldownsDefault = "100ms,1ms"

func riverLabel(cooldown time.Duration) string {
	return "river (cooldown " + cooldown.String() + ")"
}

func (b *bench) handoff(ctx context.Context) error {
	for _, be := range b.backends() {
		if err := b.taskerHandoff(ctx, be); err != nil {
			return err
		}
	}
	if b.has("river") {
		for _, cd := range b.o.riverCooldowns {
			if err := b.riverHandoff(ctx, cd); err != nil {
				return err
			}
		}
	}
	if b.has("dbos") {
		b.add(Result{Scenario: "handoff", System: "dbos", Unsupported: true, Text: "n/a",
			Note: "a DBOS workflow's steps run in its own goroutine; there is no queue handoff between steps to compare"})
	}
	return nil
}

// latencyShapes are the task-latency scenarios, with Tasker Core's published p50s.
var latencyShapes = []struct{ name, label, published string }{
	{"linear4", "latency linear-4", "257 ms"},
	{"diamond4", "latency diamond-4", "200–259 ms"},
}

func (b *bench) latency(ctx context.Context) error {
	var ts, ds []Result
	var err error
	if b.has("tasker") {
		if ts, err = b.taskerLatency(ctx); err != nil {
			return err
		}
	}
	if b.has("dbos") {
		if ds, err = b.dbosLatency(ctx); err != nil {
			return err
		}
	}
	for i, sh := range latencyShapes {
		if i < len(ts) {
			b.add(ts[i])
		}
		if i < len(ds) {
			b.add(ds[i])
		}
		b.add(Result{Scenario: sh.label, System: "Tasker Core (published)", Published: true, Text: sh.published,
			Note: "Tasker Core's published figure, quoted, not measured here"})
	}
	return nil
}

func (b *bench) throughput(ctx context.Context) error {
	for _, be := range b.backends() {
		if err := b.taskerThroughput(ctx, be); err != nil {
			return err
		}
	}
	if b.has("river") {
		for _, cd := range b.o.riverCooldowns {
			if err := b.riverThroughput(ctx, cd); err != nil {
				return err
			}
		}
	}
	return nil
}

func (b *bench) dagThroughput(ctx context.Context) error {
	for _, be := range b.backends() {
		if err := b.taskerDAG(ctx, be); err != nil {
			return err
		}
	}
	if b.has("dbos") {
		if err := b.dbosDAG(ctx); err != nil {
			return err
		}
	}
	if b.has("river") {
		b.add(Result{Scenario: "dag throughput", System: "river", Unsupported: true, Text: "n/a",
			Note: "River's open-source edition has no DAG workflows (River Pro has)"})
	}
	return nil
}

func (b *bench) scale(ctx context.Context) error {
	if b.has("tasker") {
		if err := b.taskerScale(ctx); err != nil {
			return err
		}
	}
	if b.has("dbos") {
		if err := b.dbosScale(ctx); err != nil {
			return err
		}
	}
	return nil
}

func (b *bench) idle(ctx context.Context) error {
	if b.has("tasker") {
		if err := b.taskerIdle(ctx); err != nil {
			return err
		}
	}
	if b.has("river") {
		if err := b.riverIdle(ctx); err != nil {
			return err
		}
	}
	if b.has("dbos") {
		if err := b.dbosIdle(ctx); err != nil {
			return err
		}
	}
	return nil
}
