package gotests

import (
	"context"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/IBM/sarama"
)

func saramaConfig() *sarama.Config {
	c := sarama.NewConfig()
	c.Version = sarama.V2_8_0_0
	c.Producer.RequiredAcks = sarama.WaitForAll
	c.Producer.Idempotent = true
	c.Net.MaxOpenRequests = 1
	c.Producer.Return.Successes = true
	c.Producer.Retry.Max = 10
	c.Consumer.Offsets.Initial = sarama.OffsetOldest
	return c
}

// readAll is a consumer group handler that records every value it reads
// and marks it consumed.
type readAll struct {
	mu   sync.Mutex
	seen map[string]int
	want int
	done chan struct{}
	once sync.Once
}

func (h *readAll) Setup(sarama.ConsumerGroupSession) error   { return nil }
func (h *readAll) Cleanup(sarama.ConsumerGroupSession) error { return nil }
func (h *readAll) ConsumeClaim(s sarama.ConsumerGroupSession, c sarama.ConsumerGroupClaim) error {
	for m := range c.Messages() {
		h.mu.Lock()
		h.seen[string(m.Value)]++
		n := len(h.seen)
		h.mu.Unlock()
		s.MarkMessage(m, "")
		if n >= h.want {
			h.once.Do(func() { close(h.done) })
		}
	}
	return nil
}

// sendEachAcked sends n keyed records one by one (calling before(i) ahead
// of record i, if given) and fails unless each is acknowledged at an
// offset of its own.
func sendEachAcked(t *testing.T, p sarama.SyncProducer, topic string, n int, before func(i int)) {
	t.Helper()
	at := map[string]string{}
	for i := 0; i < n; i++ {
		if before != nil {
			before(i)
		}
		v := fmt.Sprintf("s%04d", i)
		part, off, err := p.SendMessage(&sarama.ProducerMessage{
			Topic: topic, Key: sarama.StringEncoder(fmt.Sprintf("k%d", i%13)), Value: sarama.StringEncoder(v),
		})
		if err != nil {
			t.Fatalf("record %d: %v", i, err)
		}
		k := fmt.Sprintf("%d/%d", part, off)
		if prev, dup := at[k]; dup {
			t.Fatalf("%s acknowledged at %s, like %s", v, k, prev)
		}
		at[k] = v
	}
}

// readOnceInGroup reads topic with a sarama consumer group on addrs until
// n distinct records are read (or ctx ends), and fails unless each was
// read exactly once.
func readOnceInGroup(ctx context.Context, t *testing.T, addrs []string, group, topic string, cfg *sarama.Config, n int) {
	t.Helper()
	g, err := sarama.NewConsumerGroup(addrs, group, cfg)
	if err != nil {
		t.Fatal(err)
	}
	h := &readAll{seen: map[string]int{}, want: n, done: make(chan struct{})}
	gctx, gcancel := context.WithCancel(ctx)
	defer gcancel()
	go func() {
		for gctx.Err() == nil {
			if err := g.Consume(gctx, []string{topic}, h); err != nil && gctx.Err() == nil {
				t.Errorf("consume: %v", err)
				return
			}
		}
	}()
	select {
	case <-h.done:
	case <-gctx.Done():
	}
	gcancel()
	if err := g.Close(); err != nil {
		t.Fatal(err)
	}
	h.mu.Lock()
	defer h.mu.Unlock()
	readEachOnce(t, h.seen, n)
}

// sarama with an idempotent acks=all SyncProducer: a topic created with its
// ClusterAdmin, 1,000 records acknowledged at distinct offsets, read back
// once by a consumer group, the group's offsets committed.
func TestSaramaProduceAndGroupConsume(t *testing.T) {
	b := startBroker(t)
	cfg := saramaConfig()
	adm, err := sarama.NewClusterAdmin([]string{b.addr}, cfg)
	if err != nil {
		t.Fatal(err)
	}
	defer adm.Close()
	if err := adm.CreateTopic("sarama-orders", &sarama.TopicDetail{NumPartitions: 3, ReplicationFactor: 1}, false); err != nil {
		t.Fatal(err)
	}
	if err := adm.CreateTopic("sarama-orders", &sarama.TopicDetail{NumPartitions: 3, ReplicationFactor: 1}, false); err == nil {
		t.Fatal("creating sarama-orders twice succeeded")
	}

	p, err := sarama.NewSyncProducer([]string{b.addr}, cfg)
	if err != nil {
		t.Fatal(err)
	}
	defer p.Close()
	const n = 1000
	sendEachAcked(t, p, "sarama-orders", n, nil)

	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	readOnceInGroup(ctx, t, []string{b.addr}, "sarama-readers", "sarama-orders", cfg, n)
	offsets, err := adm.ListConsumerGroupOffsets("sarama-readers", nil)
	if err != nil {
		t.Fatal(err)
	}
	var committed int64
	for _, ps := range offsets.Blocks {
		for _, blk := range ps {
			committed += blk.Offset
		}
	}
	if committed != n {
		t.Fatalf("the group committed %d records' worth of offsets, want %d", committed, n)
	}
}
