package gotests

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kgo"
)

func client(t *testing.T, b *broker, opts ...kgo.Opt) *kgo.Client {
	t.Helper()
	c, err := kgo.NewClient(append([]kgo.Opt{kgo.SeedBrokers(b.addr)}, opts...)...)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(c.Close)
	return c
}

// franz-go's defaults: idempotent, acks=all. 2,000 records over three
// partitions are acknowledged at distinct offsets, and a consumer group
// reads every one of them back, once.
func TestFranzGoProduceAndGroupConsume(t *testing.T) {
	b := startBroker(t)
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	adm := kadm.NewClient(client(t, b))
	created, err := adm.CreateTopics(ctx, 3, 1, nil, "go-orders")
	if err != nil {
		t.Fatal(err)
	}
	if err := created.Error(); err != nil {
		t.Fatal(err)
	}

	p := client(t, b, kgo.DefaultProduceTopic("go-orders"))
	const n = 2000
	acked := map[string]string{}
	for i := 0; i < n; i++ {
		r := &kgo.Record{Key: []byte(fmt.Sprintf("k%d", i%17)), Value: []byte(fmt.Sprintf("v%d", i))}
		res := p.ProduceSync(ctx, r)
		if err := res.FirstErr(); err != nil {
			t.Fatalf("record %d: %v", i, err)
		}
		at := fmt.Sprintf("%d/%d", r.Partition, r.Offset)
		if prev, dup := acked[at]; dup {
			t.Fatalf("%s acknowledged at %s, like %s", r.Value, at, prev)
		}
		acked[at] = string(r.Value)
	}

	c := client(t, b, kgo.ConsumeTopics("go-orders"), kgo.ConsumerGroup("go-readers"),
		kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()))
	readAcked(ctx, t, c, acked, n, true)
	if err := c.CommitUncommittedOffsets(ctx); err != nil {
		t.Fatal(err)
	}
	offsets, err := adm.FetchOffsets(ctx, "go-readers")
	if err != nil {
		t.Fatal(err)
	}
	var committed int64
	offsets.Each(func(o kadm.OffsetResponse) { committed += o.At })
	if committed != n {
		t.Fatalf("the group committed %d records' worth of offsets, want %d", committed, n)
	}
}

// kadm's admin surface that Sluice serves: topics created, described,
// grown, reconfigured and deleted, with Kafka's errors for what is wrong.
func TestFranzGoAdmin(t *testing.T) {
	b := startBroker(t)
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	adm := kadm.NewClient(client(t, b))

	if _, err := adm.CreateTopics(ctx, 2, 1, map[string]*string{"retention.ms": kadm.StringPtr("60000")}, "go-admin"); err != nil {
		t.Fatal(err)
	}
	again, err := adm.CreateTopics(ctx, 2, 1, nil, "go-admin")
	if err != nil {
		t.Fatal(err)
	}
	if got := again["go-admin"].Err; got != kerr.TopicAlreadyExists {
		t.Fatalf("creating go-admin twice: %v, want TOPIC_ALREADY_EXISTS", got)
	}
	bad, err := adm.CreateTopics(ctx, 0, 1, nil, "go-zero")
	if err != nil {
		t.Fatal(err)
	}
	if got := bad["go-zero"].Err; got != kerr.InvalidPartitions {
		t.Fatalf("a topic of 0 partitions: %v, want INVALID_PARTITIONS", got)
	}

	topics, err := adm.ListTopics(ctx, "go-admin")
	if err != nil {
		t.Fatal(err)
	}
	if d := topics["go-admin"]; d.Err != nil || len(d.Partitions) != 2 {
		t.Fatalf("go-admin described as %+v", d)
	}
	configs, err := adm.DescribeTopicConfigs(ctx, "go-admin")
	if err != nil {
		t.Fatal(err)
	}
	rc, err := configs.On("go-admin", nil)
	if err != nil {
		t.Fatal(err)
	}
	found := false
	for _, c := range rc.Configs {
		if c.Key == "retention.ms" {
			found = c.MaybeValue() == "60000" && c.Source.String() == "DYNAMIC_TOPIC_CONFIG"
		}
	}
	if !found {
		t.Fatalf("retention.ms is not described as set on the topic: %+v", rc.Configs)
	}

	grown, err := adm.CreatePartitions(ctx, 2, "go-admin")
	if err != nil {
		t.Fatal(err)
	}
	if err := grown.Error(); err != nil {
		t.Fatal(err)
	}
	if _, err := adm.AlterTopicConfigs(ctx, []kadm.AlterConfig{{Name: "retention.ms", Value: kadm.StringPtr("120000")}}, "go-admin"); err != nil {
		t.Fatal(err)
	}
	topics, err = adm.ListTopics(ctx, "go-admin")
	if err != nil {
		t.Fatal(err)
	}
	if n := len(topics["go-admin"].Partitions); n != 4 {
		t.Fatalf("go-admin has %d partitions after growing by 2", n)
	}
	deleted, err := adm.DeleteTopics(ctx, "go-admin")
	if err != nil {
		t.Fatal(err)
	}
	if err := deleted.Error(); err != nil {
		t.Fatal(err)
	}
	gone, err := adm.DeleteTopics(ctx, "go-admin")
	if err != nil {
		t.Fatal(err)
	}
	if got := gone["go-admin"].Err; got != kerr.UnknownTopicOrPartition {
		t.Fatalf("deleting go-admin twice: %v, want UNKNOWN_TOPIC_OR_PARTITION", got)
	}
}
