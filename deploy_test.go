package main

// The image and the compose file, checked without a Docker engine (none
// runs where the tests do): what they promise must hold in their text, and
// the binary they build must stamp its version.

import (
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"go.yaml.in/yaml/v3"
)

type composeFile struct {
	Services map[string]struct {
		Command     []string          `yaml:"command"`
		Environment map[string]string `yaml:"environment"`
		Secrets     []string          `yaml:"secrets"`
		Healthcheck struct {
			Test []string `yaml:"test"`
		} `yaml:"healthcheck"`
		StopGracePeriod string `yaml:"stop_grace_period"`
	} `yaml:"services"`
	Secrets map[string]struct {
		File string `yaml:"file"`
	} `yaml:"secrets"`
}

func TestComposeFile(t *testing.T) {
	raw, err := os.ReadFile("docker-compose.yml")
	if err != nil {
		t.Fatal(err)
	}
	var c composeFile
	if err := yaml.Unmarshal(raw, &c); err != nil {
		t.Fatalf("docker-compose.yml: %v", err)
	}
	redis, sd := c.Services["redis"], c.Services["sessiond"]
	cmd := strings.Join(redis.Command, " ")
	// A memory cap with noeviction: a full Redis refuses writes (503), it
	// never drops a session or an index.
	if !strings.Contains(cmd, "--maxmemory ") || !strings.Contains(cmd, "--maxmemory-policy noeviction") ||
		!strings.Contains(cmd, "--appendonly yes") {
		t.Errorf("redis command %q: want AOF, --maxmemory and --maxmemory-policy noeviction", cmd)
	}
	if got := strings.Join(sd.Healthcheck.Test, " "); got != "CMD /sessiond healthcheck" {
		t.Errorf("sessiond healthcheck %q: want the binary's own probe", got)
	}
	grace, err1 := time.ParseDuration(sd.StopGracePeriod)
	shutdown, err2 := time.ParseDuration(sd.Environment["SHUTDOWN_TIMEOUT"])
	if err1 != nil || err2 != nil || grace <= shutdown {
		t.Errorf("stop_grace_period %q must be longer than SHUTDOWN_TIMEOUT %q", sd.StopGracePeriod, sd.Environment["SHUTDOWN_TIMEOUT"])
	}
	// Secrets through files, not the environment.
	for _, v := range []string{"JWT_SECRET", "ADMIN_PASSWORD"} {
		if _, ok := sd.Environment[v]; ok {
			t.Errorf("%s is in the environment; want %s_FILE", v, v)
		}
		file := sd.Environment[v+"_FILE"]
		name := strings.TrimPrefix(file, "/run/secrets/")
		if _, ok := c.Secrets[name]; !ok || file == name {
			t.Errorf("%s_FILE %q is not a compose secret", v, file)
		}
	}
	// Every variable it sets is one the README documents (and so one the
	// tests run the binary with).
	documented := documentedVariables(t)
	for v := range sd.Environment {
		if !documented[v] {
			t.Errorf("docker-compose.yml sets %s, which the README does not document", v)
		}
	}
}

func TestDockerfile(t *testing.T) {
	df, err := os.ReadFile("Dockerfile")
	if err != nil {
		t.Fatal(err)
	}
	gomod, err := os.ReadFile("go.mod")
	if err != nil {
		t.Fatal(err)
	}
	goVersion := regexp.MustCompile(`(?m)^go (\S+)$`).FindSubmatch(gomod)
	if goVersion == nil || !strings.Contains(string(df), "FROM golang:"+string(goVersion[1])+"-") {
		t.Errorf("the build image is not go.mod's Go %s", goVersion)
	}
	for _, want := range []string{`HEALTHCHECK`, `CMD ["/sessiond", "healthcheck"]`, `-X main.version=${VERSION}`, "USER nonroot"} {
		if !strings.Contains(string(df), want) {
			t.Errorf("Dockerfile lacks %s", want)
		}
	}
	ignore, err := os.ReadFile(".dockerignore")
	if err != nil || !strings.Contains(string(ignore), ".git") {
		t.Errorf(".dockerignore must keep .git out of the build context (%v)", err)
	}
}

// The version is stamped into the binary as the Dockerfile builds it.
func TestVersionStamp(t *testing.T) {
	bin := filepath.Join(t.TempDir(), "sessiond")
	build := exec.Command("go", "build", "-ldflags", "-X main.version=1.2.3-test", "-o", bin, ".")
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("build: %v\n%s", err, out)
	}
	out, err := exec.Command(bin, "version").Output()
	if err != nil || strings.TrimSpace(string(out)) != "sessiond 1.2.3-test" {
		t.Fatalf("sessiond version: %q, %v", out, err)
	}
}
