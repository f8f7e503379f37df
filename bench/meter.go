package main

import (
	"context"
	"os"
	"runtime"
	"strconv"
	"strings"
	"time"

	"github.com/redis/rueidis"

	"github.com/sessiond/sessiond/internal/redistest"
)

// meter reads, around each load run, the CPU this process used, the CPU the
// Redis node(s) used, and the CPU the whole machine used, so a run can tell
// what the Redis side of a request costs (outside this process) and whether
// something else on the machine was busy while it ran.
type meter struct {
	redis rueidis.Client // nil: Redis CPU is not read
}

type cpuSample struct {
	proc, redis, machine time.Duration
	machineOK            bool
}

func newMeter(rs *redistest.Server) *meter {
	c, err := rueidis.NewClient(rs.Options())
	if err != nil {
		return &meter{}
	}
	return &meter{redis: c}
}

func (m *meter) Close() {
	if m.redis != nil {
		m.redis.Close()
	}
}

func (m *meter) sample() cpuSample {
	s := cpuSample{proc: processCPU(), redis: m.redisCPU()}
	s.machine, s.machineOK = machineBusy()
	return s
}

// measure runs f and adds to its result the Redis CPU and the CPU of the
// machine's other processes over the run.
func (m *meter) measure(f func() result) result {
	a := m.sample()
	r := f()
	b := m.sample()
	r.redisCPU = b.redis - a.redis
	if a.machineOK && b.machineOK {
		r.otherCPU = max((b.machine-a.machine)-(b.proc-a.proc)-r.redisCPU, 0)
		r.capacity = time.Duration(r.seconds * float64(runtime.NumCPU()) * float64(time.Second))
	}
	return r
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
