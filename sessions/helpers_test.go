package sessions_test

import (
	"testing"
	"time"

	"github.com/redis/rueidis"

	"github.com/sessiond/sessiond/audit"
	"github.com/sessiond/sessiond/internal/keys"
	"github.com/sessiond/sessiond/sessions"
)

// newStore is a store under prefix; options left zero get test values (the
// service's defaults are its configuration's, in server/).
func newStore(t testing.TB, c rueidis.Client, prefix string, o sessions.Options) *sessions.Store {
	t.Helper()
	o.Keys = keys.New(prefix)
	if o.IdleTimeout == 0 {
		o.IdleTimeout = 720 * time.Hour
	}
	if o.MaxLifetime == 0 {
		o.MaxLifetime = 2160 * time.Hour
	}
	if o.Timeout == 0 {
		o.Timeout = 2 * time.Second
	}
	if o.Audit == nil {
		o.Audit = audit.New(c, o.Keys, o.Timeout, o.Now)
	}
	s, err := sessions.New(c, o)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func ptr[T any](v T) *T { return &v }
