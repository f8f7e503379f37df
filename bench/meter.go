package main

import (
	"context"
	"os"
	"runtime"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/redis/rueidis"
)

// meter reads, around each load run, the CPU this process used, the CPU the
// Redis node(s) used and the commands they ran, the uses of sessions the
// replicas recorded, and the CPU the whole machine used, so a run can tell
// what the Redis side of a request costs (outside this process), how many
// requests touched a session or missed the client-side cache, and whether
// something else on the machine was busy while it ran.
type meter struct {
	redis    rueidis.Client // nil: Redis is not read
	replicas []*replica
}

type cpuSample struct {
	proc, redis, machine time.Duration
	machineOK            bool
	touches, caching     int64
}

func newMeter(b *bench) *meter {
	c, err := rueidis.NewClient(b.rs.Options())
	if err != nil {
		return &meter{replicas: b.replicas}
	}
	return &meter{redis: c, replicas: b.replicas}
}

// touches are the uses of sessions the replicas recorded, plain or scripted.
func (m *meter) touches() int64 {
	var n int64
	for _, r := range m.replicas {
		plain, scripted := r.srv.Sessions.Touches()
		n += plain + scripted
	}
	return n
}

func (m *meter) Close() {
	if m.redis != nil {
		m.redis.Close()
	}
}

func (m *meter) sample() cpuSample {
	s := cpuSample{proc: processCPU(), redis: m.redisCPU()}
	s.touches, s.caching = m.touches(), m.cacheMisses()
	s.machine, s.machineOK = machineBusy()
	return s
}

// measure runs f and adds to its sample this process's CPU, Redis's CPU and
// commands, and the share of the machine's CPU that other processes (not
// this one, not Redis, not wrk) used over the run.
func (m *meter) measure(f func() (sample, error)) (sample, error) {
	a := m.sample()
	r, err := f()
	b := m.sample()
	if err != nil {
		return r, err
	}
	r.cpu = b.proc - a.proc
	r.redisCPU = b.redis - a.redis
	r.touches, r.reads = b.touches-a.touches, b.caching-a.caching
	r.others = -1
	if a.machineOK && b.machineOK && r.seconds > 0 {
		other := max((b.machine-a.machine)-r.cpu-r.redisCPU-r.loadCPU, 0)
		r.others = other.Seconds() / (r.seconds * float64(runtime.NumCPU()))
	}
	return r, nil
}

// cacheMisses sums, over every node, the CLIENT CACHING calls: one per
// client-side cache miss.
func (m *meter) cacheMisses() (caching int64) {
	if m.redis == nil {
		return 0
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	for _, node := range m.redis.Nodes() {
		info, err := node.Do(ctx, node.B().Info().Section("commandstats").Build()).ToString()
		if err != nil {
			continue
		}
		for _, line := range strings.Split(info, "\r\n") {
			if stats, ok := strings.CutPrefix(line, "cmdstat_client|caching:"); ok {
				caching += statField(stats, "calls")
			}
		}
	}
	return caching
}

// statField is the integer field of an INFO line's "a=1,b=2" value.
func statField(stats, field string) int64 {
	for _, kv := range strings.Split(stats, ",") {
		if v, ok := strings.CutPrefix(kv, field+"="); ok {
			n, _ := strconv.ParseInt(v, 10, 64)
			return n
		}
	}
	return 0
}

// redisCPU sums used_cpu_user and used_cpu_sys over every node.
func (m *meter) redisCPU() time.Duration {
	if m.redis == nil {
		return 0
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	var total float64
	for _, node := range m.redis.Nodes() {
		info, err := node.Do(ctx, node.B().Info().Section("cpu").Build()).ToString()
		if err != nil {
			continue
		}
		for _, line := range strings.Split(info, "\r\n") {
			for _, field := range []string{"used_cpu_user:", "used_cpu_sys:"} {
				if v, ok := strings.CutPrefix(line, field); ok {
					f, _ := strconv.ParseFloat(v, 64)
					total += f
				}
			}
		}
	}
	return time.Duration(total * float64(time.Second))
}

// machineBusy is the CPU time all processors have spent not idle since boot,
// from /proc/stat (Linux; USER_HZ is 100 there).
func machineBusy() (time.Duration, bool) {
	b, err := os.ReadFile("/proc/stat")
	if err != nil {
		return 0, false
	}
	line, _, _ := strings.Cut(string(b), "\n")
	f := strings.Fields(line)
	if len(f) < 9 || f[0] != "cpu" {
		return 0, false
	}
	var busy int64
	// user nice system idle iowait irq softirq steal: all but idle and iowait.
	for _, i := range []int{1, 2, 3, 6, 7, 8} {
		n, err := strconv.ParseInt(f[i], 10, 64)
		if err != nil {
			return 0, false
		}
		busy += n
	}
	return time.Duration(busy) * 10 * time.Millisecond, true
}

// processCPU is the user and system CPU time this process has used.
func processCPU() time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// memory is this process's Go heap in use after a collection (what is live:
// the service's caches, and the bench's own little) and its anonymous
// resident memory (RssAnon: the heap, stacks and runtime, without the
// mapped token files, which are file pages).
func memory() (heap, rssAnon int64) {
	runtime.GC()
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	heap = int64(ms.HeapInuse)
	b, err := os.ReadFile("/proc/self/status")
	if err != nil {
		return heap, -1
	}
	for _, line := range strings.Split(string(b), "\n") {
		if v, ok := strings.CutPrefix(line, "RssAnon:"); ok {
			kb, _ := strconv.ParseInt(strings.TrimSuffix(strings.TrimSpace(v), " kB"), 10, 64)
			return heap, kb << 10
		}
	}
	return heap, -1
}
