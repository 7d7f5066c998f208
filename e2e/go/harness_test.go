// Package gotests drives a real sluice-broker process with Go Kafka
// clients that nobody on the Sluice team wrote (franz-go: kgo and kadm),
// over TCP on loopback.
package gotests

import (
	"context"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"
)

// broker is one sluice-broker process with its own data directory; it can
// be killed (SIGKILL) and started again on its ports and data.
type broker struct {
	t    *testing.T
	addr string
	args []string
	log  *os.File
	cmd  *exec.Cmd
}

// brokerBin is the binary the tests start: SLUICE_BROKER_BIN, or the debug
// build of the workspace.
func brokerBin(t *testing.T) string {
	if b := os.Getenv("SLUICE_BROKER_BIN"); b != "" {
		return b
	}
	target := os.Getenv("CARGO_TARGET_DIR")
	if target == "" {
		target = filepath.Join("..", "..", "target")
	}
	bin, err := filepath.Abs(filepath.Join(target, "debug", "sluice-broker"))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(bin); err != nil {
		t.Fatalf("%s: build it with cargo build -p sluice-broker", bin)
	}
	return bin
}

// Ports handed out by freePort: the next one to try, per process.
var (
	portMu   sync.Mutex
	nextPort = -1
)

// testPortsFrom is the lowest port test listeners take.
const testPortsFrom = 20000

// ephemeralStart is the first port of the kernel's ephemeral range, where
// outgoing connections get their source ports.
func ephemeralStart() int {
	b, err := os.ReadFile("/proc/sys/net/ipv4/ip_local_port_range")
	if err == nil {
		if f := strings.Fields(string(b)); len(f) > 0 {
			if n, err := strconv.Atoi(f[0]); err == nil {
				return n
			}
		}
	}
	return 32768
}

// freePort is a port nothing listens on now, from below the ephemeral
// range (as the Rust harness's free_port_list): no outgoing connection of
// a broker already started takes it before its broker binds it, and a
// process never hands a port out twice.
func freePort(t *testing.T) int {
	t.Helper()
	portMu.Lock()
	defer portMu.Unlock()
	end := min(ephemeralStart(), 65536)
	if span := end - testPortsFrom; span > 1000 {
		if nextPort < 0 {
			nextPort = (os.Getpid() * 7919) % span
		}
		for range span {
			port := testPortsFrom + nextPort%span
			nextPort++
			if l, err := net.Listen("tcp", fmt.Sprintf("127.0.0.1:%d", port)); err == nil {
				l.Close()
				return port
			}
		}
	}
	// No room below the ephemeral range: the kernel's choice.
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port
}

// startBroker starts a broker on fresh ports and waits until it answers
// TCP; it is killed when the test ends.
func startBroker(t *testing.T) *broker {
	t.Helper()
	b := newBroker(t)
	b.start()
	b.awaitListening()
	return b
}

// startCluster starts n brokers as one cluster (node ids 0..n-1, the first
// three the metadata quorum's voters) and waits until each listens.
func startCluster(t *testing.T, n int, extra ...string) []*broker {
	t.Helper()
	internal := make([]int, n)
	voters := ""
	for i := range internal {
		internal[i] = freePort(t)
		if i < 3 {
			if i > 0 {
				voters += ","
			}
			voters += fmt.Sprintf("%d@127.0.0.1:%d", i, internal[i])
		}
	}
	bs := make([]*broker, n)
	for i := range bs {
		bs[i] = newBroker(t, append([]string{"--node-id", fmt.Sprint(i),
			"--internal-listener", fmt.Sprintf("127.0.0.1:%d", internal[i]),
			"--controller-quorum-voters", voters}, extra...)...)
		bs[i].start()
	}
	for _, b := range bs {
		b.awaitListening()
	}
	return bs
}

// newBroker prepares a broker on fresh ports with a data directory of its
// own; its log is shown if the test fails.
func newBroker(t *testing.T, extra ...string) *broker {
	t.Helper()
	dir := t.TempDir()
	port, metrics := freePort(t), freePort(t)
	addr := fmt.Sprintf("127.0.0.1:%d", port)
	log, err := os.Create(filepath.Join(dir, "broker.log"))
	if err != nil {
		t.Fatal(err)
	}
	args := append([]string{
		"--listeners", addr,
		"--metrics-listener", fmt.Sprintf("127.0.0.1:%d", metrics),
		"--log-dirs", filepath.Join(dir, "data")}, extra...)
	b := &broker{t: t, addr: addr, args: args, log: log}
	t.Cleanup(func() {
		b.kill()
		if t.Failed() {
			if out, err := os.ReadFile(log.Name()); err == nil {
				t.Logf("broker %s log:\n%s", addr, out)
			}
		}
		log.Close()
	})
	return b
}

// start spawns the broker process.
func (b *broker) start() {
	b.t.Helper()
	cmd := exec.Command(brokerBin(b.t), b.args...)
	cmd.Stdout, cmd.Stderr = b.log, b.log
	// The broker refuses SLUICE_* settings it does not know.
	for _, kv := range os.Environ() {
		if len(kv) < 7 || kv[:7] != "SLUICE_" {
			cmd.Env = append(cmd.Env, kv)
		}
	}
	if err := cmd.Start(); err != nil {
		b.t.Fatal(err)
	}
	b.cmd = cmd
}

// awaitListening waits up to 30 s until the broker accepts TCP.
func (b *broker) awaitListening() {
	b.t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for time.Now().Before(deadline) {
		c, err := net.DialTimeout("tcp", b.addr, 200*time.Millisecond)
		if err == nil {
			c.Close()
			return
		}
		time.Sleep(50 * time.Millisecond)
	}
	b.t.Fatalf("the broker did not listen on %s within 30 s", b.addr)
}

// kill sends SIGKILL and waits for the process to end.
func (b *broker) kill() {
	if b.cmd != nil && b.cmd.Process != nil {
		_ = b.cmd.Process.Kill()
		_, _ = b.cmd.Process.Wait()
		b.cmd = nil
	}
}

// restart starts a killed broker again and waits until it listens.
func (b *broker) restart() {
	b.t.Helper()
	b.start()
	b.awaitListening()
}

// addrs lists the brokers' client addresses, as seed brokers.
func addrs(bs []*broker) []string {
	out := make([]string, len(bs))
	for i, b := range bs {
		out[i] = b.addr
	}
	return out
}

// readAcked polls c until n distinct records are read (or ctx ends): each
// must be the value acknowledged at its partition/offset ("p/o" in acked),
// and read once. A fetch error fails the test when fetchErrorsFail.
func readAcked(ctx context.Context, t *testing.T, c *kgo.Client, acked map[string]string, n int, fetchErrorsFail bool) {
	t.Helper()
	seen := map[string]int{}
	for len(seen) < n && ctx.Err() == nil {
		fs := c.PollFetches(ctx)
		for _, e := range fs.Errors() {
			if fetchErrorsFail && ctx.Err() == nil {
				t.Fatalf("fetch %s/%d: %v", e.Topic, e.Partition, e.Err)
			}
		}
		fs.EachRecord(func(r *kgo.Record) {
			at := fmt.Sprintf("%d/%d", r.Partition, r.Offset)
			if acked[at] != string(r.Value) {
				t.Errorf("read %s at %s, acknowledged there: %q", r.Value, at, acked[at])
			}
			seen[string(r.Value)]++
		})
	}
	readEachOnce(t, seen, n)
}

// readEachOnce fails unless seen (value -> times read) holds n values,
// each read once.
func readEachOnce(t *testing.T, seen map[string]int, n int) {
	t.Helper()
	if len(seen) != n {
		t.Fatalf("read %d of %d records", len(seen), n)
	}
	for v, k := range seen {
		if k != 1 {
			t.Fatalf("%s read %d times", v, k)
		}
	}
}
