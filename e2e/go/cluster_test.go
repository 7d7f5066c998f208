package gotests

import (
	"context"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/IBM/sarama"
	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"
)

// clusterClient is a franz-go client seeded with every broker of bs.
func clusterClient(t *testing.T, bs []*broker, opts ...kgo.Opt) *kgo.Client {
	t.Helper()
	c, err := kgo.NewClient(append([]kgo.Opt{kgo.SeedBrokers(addrs(bs)...)}, opts...)...)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(c.Close)
	return c
}

// createReplicated creates topic with RF 3 and min.insync.replicas 2 once
// the cluster's metadata lists three brokers, and returns the leader of
// its partition 0.
func createReplicated(ctx context.Context, t *testing.T, adm *kadm.Client, topic string, partitions int32) int32 {
	t.Helper()
	for {
		bs, err := adm.ListBrokers(ctx)
		if err == nil && len(bs) == 3 {
			break
		}
		if ctx.Err() != nil {
			t.Fatalf("three brokers in the metadata: %v (%d)", err, len(bs))
		}
		time.Sleep(200 * time.Millisecond)
	}
	created, err := adm.CreateTopics(ctx, partitions, 3, map[string]*string{"min.insync.replicas": kadm.StringPtr("2")}, topic)
	if err != nil {
		t.Fatal(err)
	}
	if err := created.Error(); err != nil {
		t.Fatal(err)
	}
	for {
		td, err := adm.ListTopics(ctx, topic)
		if err == nil {
			if p, ok := td[topic].Partitions[0]; ok && p.Leader >= 0 {
				return p.Leader
			}
		}
		if ctx.Err() != nil {
			t.Fatalf("a leader for %s-0: %v", topic, err)
		}
		time.Sleep(200 * time.Millisecond)
	}
}

// franz-go's defaults (idempotent, acks=all) against three brokers: the
// leader of partition 0 is killed (SIGKILL) after a third of 6,000 records
// and started again after two thirds. Every record is acknowledged once,
// at a distinct offset, and a consumer group reads each back at its offset.
func TestFranzGoThreeBrokersLeaderKilledMidProduce(t *testing.T) {
	bs := startCluster(t, 3)
	ctx, cancel := context.WithTimeout(context.Background(), 180*time.Second)
	defer cancel()
	adm := kadm.NewClient(clusterClient(t, bs))
	leader := createReplicated(ctx, t, adm, "go-durable", 3)

	p := clusterClient(t, bs, kgo.DefaultProduceTopic("go-durable"))
	const n = 6000
	var mu sync.Mutex
	acked := map[string]string{}
	var failed error
	for i := 0; i < n; i++ {
		r := &kgo.Record{Key: []byte(fmt.Sprintf("k%d", i)), Value: []byte(fmt.Sprintf("v%05d", i))}
		p.Produce(ctx, r, func(r *kgo.Record, err error) {
			mu.Lock()
			defer mu.Unlock()
			if err != nil {
				if failed == nil {
					failed = err
				}
				return
			}
			at := fmt.Sprintf("%d/%d", r.Partition, r.Offset)
			if prev, dup := acked[at]; dup && failed == nil {
				failed = fmt.Errorf("%s acknowledged at %s, like %s", r.Value, at, prev)
			}
			acked[at] = string(r.Value)
		})
		switch i {
		case n / 3:
			if err := p.Flush(ctx); err != nil {
				t.Fatal(err)
			}
			bs[leader].kill()
		case 2 * n / 3:
			bs[leader].restart()
		}
		if i%100 == 0 {
			time.Sleep(10 * time.Millisecond)
		}
	}
	if err := p.Flush(ctx); err != nil {
		t.Fatal(err)
	}
	mu.Lock()
	if failed != nil {
		t.Fatal(failed)
	}
	if len(acked) != n {
		t.Fatalf("%d of %d records acknowledged", len(acked), n)
	}
	mu.Unlock()

	c := clusterClient(t, bs, kgo.ConsumeTopics("go-durable"), kgo.ConsumerGroup("go-durable-readers"),
		kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()))
	// Fetches may fail while the restarted broker takes its leadership back.
	readAcked(ctx, t, c, acked, n, false)
}

// sarama's idempotent acks=all SyncProducer against three brokers, with
// the leader of partition 0 killed after 300 of 1,000 records: every send
// succeeds (retried through the new leader), each at a distinct offset, and
// a consumer group seeded with the surviving brokers reads every record once.
func TestSaramaThreeBrokersLeaderKilled(t *testing.T) {
	bs := startCluster(t, 3)
	ctx, cancel := context.WithTimeout(context.Background(), 120*time.Second)
	defer cancel()
	leader := createReplicated(ctx, t, kadm.NewClient(clusterClient(t, bs)), "sarama-durable", 3)

	cfg := saramaConfig()
	cfg.Producer.Retry.Max = 30
	cfg.Producer.Retry.Backoff = 250 * time.Millisecond
	cfg.Metadata.Retry.Backoff = 250 * time.Millisecond
	p, err := sarama.NewSyncProducer(addrs(bs), cfg)
	if err != nil {
		t.Fatal(err)
	}
	defer p.Close()
	const n = 1000
	sendEachAcked(t, p, "sarama-durable", n, func(i int) {
		if i == 300 {
			bs[leader].kill()
		}
	})

	var alive []string
	for i, b := range bs {
		if int32(i) != leader {
			alive = append(alive, b.addr)
		}
	}
	readOnceInGroup(ctx, t, alive, "sarama-durable-readers", "sarama-durable", cfg, n)
}
