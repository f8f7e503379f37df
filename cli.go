package main

// The operators' commands: accounts and sessions from the shell, by the
// same rules as the admin API (internal/admin), recorded in the audit trail
// with the operator (cli:<os user>) as actor; and the container health check.

import (
	"bufio"
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"
	"unicode/utf8"

	"github.com/sessiond/sessiond/internal/errcode"
	"github.com/sessiond/sessiond/server"
	"github.com/sessiond/sessiond/users"
)

const userUsage = `usage: sessiond user COMMAND
  add --username NAME [--role user|admin]   create an account; its password on stdin
  list [--limit N] [--cursor C]              accounts in username order
  find NAME                                  the account with that name (case-insensitive)
  show ID|NAME                               an account and its live sessions
  logout ID|NAME                             end every session of the account
  disable ID|NAME                            disable it (ends every session)
  enable ID|NAME                             enable it again
  role ID|NAME user|admin                    change its role
  password ID|NAME                           set its password from stdin (ends every session)
  delete ID|NAME                             delete it (ends every session, frees the name)
  mfa-reset ID|NAME                          remove its second factors (TOTP, recovery codes, passkeys)
ID|NAME is an account's id or username; write id:ID or name:NAME when one
account's username is another account's id (the command refuses otherwise).
Each needs REDIS_URL and the same configuration as the service (JWT_SECRET or
JWT_PRIVATE_KEYS, REDIS_KEY_PREFIX, …). The last enabled admin cannot be
demoted, disabled or deleted.`

// userCmd runs one of the account commands.
func userCmd(args []string, stdin io.Reader, stdout, stderr io.Writer) int {
	if len(args) == 0 {
		fmt.Fprintln(stderr, userUsage)
		return 2
	}
	sub, args := args[0], args[1:]
	if sub == "add" {
		return userAdd(args, stdin, stdout, stderr)
	}
	wantArgs := map[string]int{"list": 0, "find": 1, "show": 1, "logout": 1, "disable": 1, "enable": 1, "role": 2, "password": 1, "delete": 1, "mfa-reset": 1}
	n, known := wantArgs[sub]
	fs := flag.NewFlagSet("user "+sub, flag.ContinueOnError)
	fs.SetOutput(stderr)
	limit := fs.Int("limit", 50, "accounts per page (1 to 500)")
	cursor := fs.String("cursor", "", "the next page's cursor, as printed")
	if !known {
		fmt.Fprintf(stderr, "sessiond: user: unknown command %q\n%s\n", sub, userUsage)
		return 2
	}
	if err := fs.Parse(args); err != nil {
		return 2
	}
	if fs.NArg() != n || (sub != "list" && (*limit != 50 || *cursor != "")) {
		fmt.Fprintln(stderr, userUsage)
		return 2
	}
	var password string
	if sub == "password" {
		var err error
		if password, err = readPassword(stdin); err != nil {
			fmt.Fprintln(stderr, "sessiond: user password:", err)
			return 1
		}
	}
	srv, code := openForCLI(stderr)
	if srv == nil {
		return code
	}
	defer srv.Close()
	ctx := context.Background()
	a := srv.Admin()
	by := operator()
	out := tabwriter.NewWriter(stdout, 0, 4, 2, ' ', 0)
	defer out.Flush()

	if sub == "list" {
		if *limit < 1 || *limit > 500 {
			fmt.Fprintln(stderr, "sessiond: user list: --limit must be from 1 to 500")
			return 2
		}
		page, next, err := srv.Users.List(ctx, *cursor, *limit)
		if err != nil {
			return fail(stderr, "user list", err)
		}
		printUsers(out, page)
		if next != "" {
			out.Flush()
			fmt.Fprintf(stdout, "more: sessiond user list --cursor %s\n", next)
		}
		return 0
	}
	var u users.User
	var err error
	if sub == "find" {
		u, err = srv.Users.FindByUsername(ctx, fs.Arg(0))
	} else {
		u, err = a.Lookup(ctx, fs.Arg(0))
	}
	if err != nil {
		return fail(stderr, "user "+sub, err)
	}
	switch sub {
	case "find":
		printUsers(out, []users.User{u})
	case "show":
		printUsers(out, []users.User{u})
		list, err := srv.Sessions.List(ctx, u.ID)
		if err != nil {
			return fail(stderr, "user show", err)
		}
		fmt.Fprintf(out, "\nSESSION\tDEVICE\tPLATFORM\tIP\tLAST SEEN\tCREATED\tEXPIRES\n")
		for _, s := range list {
			fmt.Fprintf(out, "%s\t%s\t%s\t%s\t%s\t%s\t%s\n", s.ID, shown(s.DeviceName), shown(s.Platform), shown(s.IP),
				stamp(s.LastSeenAt), stamp(s.CreatedAt), stamp(s.ExpiresAt))
		}
		if len(list) == 0 {
			fmt.Fprintln(out, "(no live sessions)")
		}
	case "logout":
		n, err := a.ForceLogout(ctx, u.ID, by)
		if err != nil {
			return fail(stderr, "user logout", err)
		}
		fmt.Fprintf(out, "ended %d sessions of %q\n", n, u.Username)
	case "disable", "enable", "role", "password":
		var ch users.Change
		switch sub {
		case "disable", "enable":
			v := sub == "disable"
			ch.Disabled = &v
		case "role":
			r := fs.Arg(1)
			ch.Role = &r
		case "password":
			ch.Password = &password
		}
		u, n, err := a.Change(ctx, u.ID, ch, by)
		if err != nil {
			return fail(stderr, "user "+sub, err)
		}
		fmt.Fprintf(out, "%s %q: role %s, disabled %v; %d sessions ended\n", u.ID, u.Username, u.Role, u.Disabled, n)
	case "mfa-reset":
		if err := a.ResetMFA(ctx, u.ID, by); err != nil {
			return fail(stderr, "user mfa-reset", err)
		}
		fmt.Fprintf(out, "removed every second factor of %q; it signs in with its password alone until it enrolls again\n", u.Username)
	case "delete":
		n, err := a.Delete(ctx, u.ID, by)
		if err != nil {
			return fail(stderr, "user delete", err)
		}
		fmt.Fprintf(out, "deleted %q (id %s); %d sessions ended\n", u.Username, u.ID, n)
	}
	return 0
}

// openForCLI opens the service's stores as serve does, quietly, against
// REDIS_URL: the embedded store lives only inside a running server.
func openForCLI(stderr io.Writer) (*server.Server, int) {
	cfg, ok := loadConfig(stderr)
	if !ok {
		return nil, 2
	}
	if cfg.RedisURL == "" {
		fmt.Fprintln(stderr, "sessiond: REDIS_URL is required (the embedded store lives only inside a running server)")
		return nil, 2
	}
	cfg.LogLevel = slog.LevelWarn
	// Warnings and errors only: the logger writes those at once.
	log, _ := server.NewLogger(cfg, stderr)
	srv, err := server.Open(context.Background(), cfg, server.Options{Log: log, Operator: true})
	if err != nil {
		fmt.Fprintln(stderr, "sessiond:", err)
		return nil, 1
	}
	return srv, 0
}

// fail reports an error and returns the exit status: 2 for what the operator
// typed wrong, 1 for the rest.
func fail(stderr io.Writer, what string, err error) int {
	fmt.Fprintf(stderr, "sessiond: %s: %v\n", what, err)
	if errcode.Of(err) == errcode.Invalid {
		return 2
	}
	return 1
}

// readPassword reads one line from stdin: never from argv, where other
// users of the machine could see it.
func readPassword(stdin io.Reader) (string, error) {
	line, err := bufio.NewReader(stdin).ReadString('\n')
	if err != nil && !errors.Is(err, io.EOF) {
		return "", fmt.Errorf("reading the password from stdin: %w", err)
	}
	pw := strings.TrimRight(line, "\r\n")
	if pw == "" {
		return "", errors.New("no password on stdin")
	}
	return pw, nil
}

func printUsers(out io.Writer, list []users.User) {
	fmt.Fprintf(out, "ID\tUSERNAME\tROLE\tDISABLED\tCREATED\n")
	for _, u := range list {
		fmt.Fprintf(out, "%s\t%s\t%s\t%v\t%s\n", shown(u.ID), shown(u.Username), shown(u.Role), u.Disabled, stamp(u.CreatedAt))
	}
}

func stamp(t time.Time) string { return t.UTC().Format(time.RFC3339) }

// shown is a stored value as a table shows it: "-" when empty; as it is when
// it is valid text of printable characters (spaces included) that cannot be
// taken for an empty or a quoted one; else quoted as Go quotes it (\n, \t,
// \x1b, \a, \u202e). Clients choose device names and platforms, and what
// reaches Redis may not have passed today's rules, so no value may forge a
// row or a column, or send the operator's terminal an escape sequence.
func shown(s string) string {
	if s == "" {
		return "-"
	}
	if s == "-" || strings.HasPrefix(s, `"`) || !utf8.ValidString(s) {
		return strconv.Quote(s)
	}
	for _, r := range s {
		if !strconv.IsPrint(r) {
			return strconv.Quote(s)
		}
	}
	return s
}

// healthcheck probes /readyz of the service at LISTEN_ADDR, for a container
// health check (the image has no shell or curl): exit 0 when it answers 200,
// 1 otherwise.
func healthcheck(stdout, stderr io.Writer) int {
	cfg, ok := loadConfig(stderr)
	if !ok {
		return 2
	}
	host, port, _ := net.SplitHostPort(cfg.ListenAddr)
	if ip := net.ParseIP(host); host == "" || (ip != nil && ip.IsUnspecified()) {
		host = "127.0.0.1"
	}
	c := &http.Client{Timeout: 3 * time.Second}
	r, err := c.Get("http://" + net.JoinHostPort(host, port) + "/readyz")
	if err != nil {
		fmt.Fprintln(stderr, "sessiond: healthcheck:", err)
		return 1
	}
	r.Body.Close()
	if r.StatusCode != http.StatusOK {
		fmt.Fprintln(stderr, "sessiond: healthcheck: /readyz answered", r.Status)
		return 1
	}
	fmt.Fprintln(stdout, "ready")
	return 0
}
