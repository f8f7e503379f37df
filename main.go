// Command sessiond is a session service: bcrypt-checked sign-in, a JWT per
// device, and revocation that bites on the next request.
//
//	sessiond [serve]       run the API (the default)
//	sessiond user ...      manage accounts and their sessions (cli.go)
//	sessiond healthcheck   exit 0 when the service is ready
//	sessiond version       print the version
//
// This package is the command line only: configuration, Redis and wiring are
// server/'s, account rules users/' and internal/admin's.
package main

import (
	"cmp"
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"os"
	"os/signal"
	"os/user"
	"syscall"

	"github.com/google/uuid"

	"github.com/sessiond/sessiond/audit"
	"github.com/sessiond/sessiond/server"
	"github.com/sessiond/sessiond/users"
)

const usage = `usage: sessiond [COMMAND]
  serve          run the API (the default)
  user ...       manage accounts and their sessions (sessiond user, for the list)
  healthcheck    exit 0 when the service at LISTEN_ADDR is ready, 1 when not
  version        print the version`

// version is set at build time with -ldflags "-X main.version=…".
var version = "dev"

func main() {
	os.Exit(run(os.Args[1:], os.Stdin, os.Stdout, os.Stderr))
}

// run returns the exit status: 0 ok, 1 a runtime failure, 2 bad usage or configuration.
func run(args []string, stdin io.Reader, stdout, stderr io.Writer) int {
	cmd := "serve"
	if len(args) > 0 {
		cmd, args = args[0], args[1:]
	}
	switch cmd {
	case "serve":
		return serve(stderr)
	case "user":
		return userCmd(args, stdin, stdout, stderr)
	case "healthcheck":
		return healthcheck(stdout, stderr)
	case "version", "--version", "-v":
		fmt.Fprintln(stdout, "sessiond", version)
		return 0
	case "help", "--help", "-h":
		fmt.Fprintln(stdout, usage)
		return 0
	}
	fmt.Fprintf(stderr, "sessiond: unknown command %q\n%s\n", cmd, usage)
	return 2
}

func loadConfig(stderr io.Writer) (server.Config, bool) {
	cfg, err := server.LoadConfig(os.Getenv)
	if err != nil {
		fmt.Fprintln(stderr, "sessiond:", err)
		return cfg, false
	}
	return cfg, true
}

func serve(stderr io.Writer) int {
	cfg, ok := loadConfig(stderr)
	if !ok {
		return 2
	}
	// Every request gets a random UUID as its id: draw them from a buffered
	// pool of crypto/rand bytes rather than a read per request.
	uuid.EnableRandPool()
	log, flushLog := server.NewLogger(cfg, stderr)
	defer flushLog()
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, os.Interrupt)
	defer stop()

	srv, err := server.Open(ctx, cfg, server.Options{Log: log, Console: stderr})
	var cerr *server.ConfigError
	if errors.As(err, &cerr) {
		fmt.Fprintln(stderr, "sessiond:", cerr)
		return 2
	}
	if err != nil {
		fmt.Fprintln(stderr, "sessiond:", err)
		return 1
	}
	defer srv.Close()
	ln, err := net.Listen("tcp", cfg.ListenAddr)
	if err != nil {
		fmt.Fprintf(stderr, "sessiond: LISTEN_ADDR: %v\n", err)
		return 2
	}
	if err := srv.Run(ctx, ln); err != nil {
		fmt.Fprintln(stderr, "sessiond:", err)
		return 1
	}
	log.Info("stopped")
	return 0
}

func userAdd(args []string, stdin io.Reader, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("user add", flag.ContinueOnError)
	fs.SetOutput(stderr)
	username := fs.String("username", "", "the new account's username")
	role := fs.String("role", users.RoleUser, "user or admin")
	if err := fs.Parse(args); err != nil {
		return 2
	}
	if *username == "" {
		fmt.Fprintln(stderr, "sessiond: user add: --username is required; the password is read from stdin")
		return 2
	}
	password, err := readPassword(stdin)
	if err != nil {
		fmt.Fprintln(stderr, "sessiond: user add:", err)
		return 1
	}
	srv, code := openForCLI(stderr)
	if srv == nil {
		return code
	}
	defer srv.Close()
	u, err := srv.Users.Create(context.Background(), *username, password, *role, operator())
	if errors.Is(err, users.ErrUsernameTaken) {
		fmt.Fprintf(stderr, "sessiond: user add: username %q is taken\n", *username)
		return 1
	}
	if err != nil {
		return fail(stderr, "user add", err)
	}
	fmt.Fprintf(stdout, "created %s %q (id %s)\n", u.Role, u.Username, u.ID)
	return 0
}

// operator is who runs an admin command, as the audit trail records it: the
// person at the shell (who ran sudo, or $USER), else the process's user. It
// names, it does not authenticate: anyone with the service's Redis
// credentials can act.
func operator() audit.Actor {
	name := cmp.Or(os.Getenv("SUDO_USER"), os.Getenv("USER"))
	if name == "" {
		if u, err := user.Current(); err == nil {
			name = u.Username
		}
	}
	return audit.Actor{ID: "cli:" + cmp.Or(name, "unknown")}
}
