// Command sessiond is a session service: bcrypt-checked sign-in, a JWT per
// device, and revocation that bites on the next request.
//
//	sessiond [serve]                                   run the API (the default)
//	sessiond user add --username NAME [--role admin]   create an account; password on stdin
//	sessiond version                                   print the version
package main

import (
	"bufio"
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"os/signal"
	"os/user"
	"strings"
	"syscall"

	"github.com/google/uuid"

	"github.com/sessiond/sessiond/internal/audit"
	"github.com/sessiond/sessiond/server"
	"github.com/sessiond/sessiond/users"
)

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
		if len(args) == 0 || args[0] != "add" {
			fmt.Fprintln(stderr, "usage: sessiond user add --username NAME [--role user|admin] < password")
			return 2
		}
		return userAdd(args[1:], stdin, stdout, stderr)
	case "version", "--version", "-v":
		fmt.Fprintln(stdout, "sessiond", version)
		return 0
	case "help", "--help", "-h":
		fmt.Fprintln(stdout, "usage: sessiond [serve] | sessiond user add --username NAME [--role user|admin] | sessiond version")
		return 0
	}
	fmt.Fprintf(stderr, "sessiond: unknown command %q (want serve, user add or version)\n", cmd)
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
	log := slog.New(slog.NewTextHandler(stderr, nil))
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
	cfg, ok := loadConfig(stderr)
	if !ok {
		return 2
	}
	if cfg.RedisURL == "" {
		fmt.Fprintln(stderr, "sessiond: user add: REDIS_URL is required (the embedded store lives only inside a running server)")
		return 2
	}
	line, err := bufio.NewReader(stdin).ReadString('\n')
	if err != nil && !errors.Is(err, io.EOF) {
		fmt.Fprintln(stderr, "sessiond: user add: reading the password from stdin:", err)
		return 1
	}
	password := strings.TrimRight(line, "\r\n")

	log := slog.New(slog.NewTextHandler(stderr, &slog.HandlerOptions{Level: slog.LevelWarn}))
	srv, err := server.Open(context.Background(), cfg, server.Options{Log: log})
	if err != nil {
		fmt.Fprintln(stderr, "sessiond:", err)
		return 1
	}
	defer srv.Close()
	u, err := srv.Users.Create(context.Background(), *username, password, *role, operator())
	switch {
	case errors.Is(err, users.ErrUsernameTaken):
		fmt.Fprintf(stderr, "sessiond: user add: username %q is taken\n", *username)
		return 1
	case errors.Is(err, users.ErrInvalidUsername), errors.Is(err, users.ErrInvalidRole),
		errors.Is(err, users.ErrPasswordTooShort), errors.Is(err, users.ErrPasswordTooLong):
		fmt.Fprintln(stderr, "sessiond: user add:", err)
		return 2
	case err != nil:
		fmt.Fprintln(stderr, "sessiond: user add:", err)
		return 1
	}
	fmt.Fprintf(stdout, "created %s %q (id %s)\n", u.Role, u.Username, u.ID)
	return 0
}

// operator is who runs an admin command, as the audit trail records it: the
// operating-system user at the shell.
func operator() audit.Actor {
	name := os.Getenv("USER")
	if u, err := user.Current(); err == nil {
		name = u.Username
	}
	return audit.Actor{ID: "cli:" + name}
}
