// Package audit is sessiond's security history: the event types, how an
// event is stored (a Redis stream per user, in the user's slot, plus one
// cross-user feed), how long it is kept, and reading it back page by page.
// The stores record an account's events in the same Lua step as the change
// (Spec), then copy them to the feed (Feed).
//
// Refused sign-ins, which anyone can cause, are kept apart (Refused): one
// record per account, type and failure window, counted in place, in a
// bounded hash of their own, so no flood fills Redis or pushes out what only
// the account's own use or an admin can cause. The views merge the two
// (List). It knows nothing about HTTP.
package audit

import (
	"context"
	"encoding/json"
	"strconv"
	"strings"
	"sync/atomic"
	"time"

	"github.com/redis/rueidis"

	"github.com/sessiond/sessiond/internal/keys"
	"github.com/sessiond/sessiond/internal/redisx"
)

// Event types.
const (
	LoginSucceeded     = "login.succeeded"
	LoginFailed        = "login.failed"
	LoginThrottled     = "login.throttled"
	SessionRevoked     = "session.revoked"
	SessionsRevokedAll = "sessions.revoked_all"
	PasswordChanged    = "password.changed"
	AccountCreated     = "account.created"
	AccountDisabled    = "account.disabled"
	AccountEnabled     = "account.enabled"
	AccountRoleChanged = "account.role_changed"
	AccountDeleted     = "account.deleted"
	// ClientAuthFailed is a failed client authentication (an introspection
	// client's secret): in the feed only, with the client's id when it is one.
	ClientAuthFailed = "client_auth.failed"
	// SessionReuseDetected: a refresh token spent before the reuse grace
	// came back, and its session was ended.
	SessionReuseDetected = "session.reuse_detected"
	// Second factors.
	MFAEnrolled            = "mfa.enrolled"
	MFARemoved             = "mfa.removed"
	MFAFailed              = "mfa.failed"
	RecoveryCodeUsed       = "recovery_code.used"
	SessionReauthenticated = "session.reauthenticated"
	// RecoveryCodesRegenerated: an account's recovery codes were replaced
	// by new ones (the old ones stop working).
	RecoveryCodesRegenerated = "recovery_codes.regenerated"
	// Passkeys (WebAuthn). PasskeyCloned: an assertion that verified but
	// whose signature counter did not move forward (the authenticator may
	// have been copied); the sign-in was refused.
	PasskeyAdded   = "passkey.added"
	PasskeyRemoved = "passkey.removed"
	PasskeyCloned  = "passkey.cloned"
)

// Types are every event type, for filters.
var Types = []string{LoginSucceeded, LoginFailed, LoginThrottled, SessionRevoked, SessionsRevokedAll,
	PasswordChanged, AccountCreated, AccountDisabled, AccountEnabled, AccountRoleChanged, AccountDeleted,
	ClientAuthFailed, SessionReuseDetected, MFAEnrolled, MFARemoved, MFAFailed, RecoveryCodeUsed, SessionReauthenticated,
	RecoveryCodesRegenerated, PasskeyAdded, PasskeyRemoved, PasskeyCloned}

// Retention: a user's history keeps its newest PerUserMax events, the feed
// its newest FeedMax, and neither anything older than MaxAge (refusals: see
// refusals.go). Trimming is approximate (Redis trims whole stream nodes), so
// a few more may stay.
const (
	PerUserMax = 1000
	FeedMax    = 100_000
	MaxAge     = 90 * 24 * time.Hour
)

// Event is one security event.
type Event struct {
	// ID is the event's id in the view it was read from (opaque).
	ID   string
	Type string
	At   time.Time
	// UserID is the account the event is about ("" for a login attempt on
	// a name that does not exist).
	UserID string
	// ActorID is who did it: the user, an admin, "cli:<name>" for an
	// operator at the command line, or "" for the system.
	ActorID   string
	SessionID string
	IP        string
	UserAgent string
	Detail    string
	// Counted marks Detail as the server's own template for a change that
	// ends sessions: the recording script writes the number it ended where
	// Detail says {count}. Nothing else is templated, so a device name or a
	// user agent is stored as it was sent.
	Counted bool
}

// Actor is who makes a change, and from where.
type Actor struct {
	ID        string
	IP        string
	UserAgent string
}

// Event is an event of this actor.
func (a Actor) Event(typ, uid, sid, detail string) Event {
	return Event{Type: typ, UserID: uid, ActorID: a.ID, SessionID: sid, IP: a.IP, UserAgent: a.UserAgent, Detail: detail}
}

// Counted is an event of this actor whose detail is a template with
// {count}, filled in with the number of sessions the change ended.
func (a Actor) Counted(typ, uid, sid, template string) Event {
	e := a.Event(typ, uid, sid, template)
	e.Counted = true
	return e
}

// WithCount fills in the count of sessions ended in the Counted events'
// details, as the scripts do, for their copy in the feed.
func WithCount(evs []Event, n int) []Event {
	out := make([]Event, len(evs))
	for i, e := range evs {
		if e.Counted {
			e.Detail = strings.ReplaceAll(e.Detail, "{count}", strconv.Itoa(n))
			e.Counted = false
		}
		out[i] = e
	}
	return out
}

// Stream field names.
const (
	fType, fUser, fActor, fSession, fIP, fUA, fDetail = "t", "u", "a", "s", "ip", "ua", "d"
)

// Spec encodes events for a script to record in the user's history, in the
// same step as the change: the script appends each as a stream entry (its
// field, value list, so the scripts name no field) and trims the history by
// count and age. Scripts read it with cjson.
func Spec(now time.Time, evs ...Event) string { return spec(now, evs, nil) }

// SpecEvicting is Spec for a login: evict is the event of a session the
// login evicts over the per-user maximum, whose id the script fills in.
func SpecEvicting(now time.Time, ev Event, evict Event) string {
	e := fieldValues(evict, false)
	return spec(now, []Event{ev}, append(e, fSession))
}

func spec(now time.Time, evs []Event, evict []string) string {
	s := struct {
		Max   int        `json:"max"`
		MinID string     `json:"minid"`
		Ev    [][]string `json:"ev"`
		// Tpl is, per event, the 1-based index in its field, value list of
		// the value the script fills the count into (0: none).
		Tpl   []int    `json:"tpl"`
		Evict []string `json:"evict,omitempty"`
	}{Max: PerUserMax, MinID: minID(now), Ev: [][]string{}, Tpl: []int{}, Evict: evict}
	for _, e := range evs {
		s.Ev = append(s.Ev, fieldValues(e, true))
		tpl := 0
		if e.Counted {
			tpl = detailIndex
		}
		s.Tpl = append(s.Tpl, tpl)
	}
	b, _ := json.Marshal(s)
	return string(b)
}

// detailIndex is where fieldValues puts the detail (1-based, for Lua).
const detailIndex = 10

// fieldValues is an event as stream fields, without the user (a user's
// history is the user's) and, unless withSession, without the session.
func fieldValues(e Event, withSession bool) []string {
	fv := []string{fType, e.Type, fActor, e.ActorID, fIP, e.IP, fUA, e.UserAgent, fDetail, e.Detail}
	if withSession {
		fv = append(fv, fSession, e.SessionID)
	}
	return fv
}

func minID(now time.Time) string { return strconv.FormatInt(now.Add(-MaxAge).UnixMilli(), 10) + "-0" }

// Log writes and reads events.
type Log struct {
	c       rueidis.Client
	k       keys.Layout
	timeout time.Duration
	now     func() time.Time
	missed  atomic.Int64
}

// New returns a Log over a client, its layout and Redis timeout.
func New(c rueidis.Client, k keys.Layout, timeout time.Duration, now func() time.Time) *Log {
	if now == nil {
		now = time.Now
	}
	return &Log{c: c, k: k, timeout: timeout, now: now}
}

func (l *Log) xadd(key string, max int, e Event) rueidis.Completed {
	return l.c.B().Xadd().Key(key).Maxlen().Almost().Threshold(strconv.Itoa(max)).Id("*").FieldValue().
		FieldValue(fType, e.Type).FieldValue(fUser, e.UserID).FieldValue(fActor, e.ActorID).
		FieldValue(fSession, e.SessionID).FieldValue(fIP, e.IP).FieldValue(fUA, e.UserAgent).
		FieldValue(fDetail, e.Detail).Build()
}

// Feed copies events to the cross-user feed, after a script recorded them
// in their user's history. It is a second step, and best effort: the change
// it follows has happened, so a fault here must not fail it. A crash or a
// Redis fault between the two leaves the event in the user's history (which
// is authoritative) but not in the feed; Missed counts those.
func (l *Log) Feed(ctx context.Context, evs ...Event) {
	if err := l.feed(ctx, evs...); err != nil {
		l.missed.Add(int64(len(evs)))
	}
}

// Missed is how many events this process failed to copy to the feed.
func (l *Log) Missed() int64 { return l.missed.Load() }

func (l *Log) feed(ctx context.Context, evs ...Event) error {
	if len(evs) == 0 {
		return nil
	}
	ctx, cancel := redisx.Timeout(ctx, l.timeout)
	defer cancel()
	cmds := make(rueidis.Commands, 0, len(evs)+1)
	for _, e := range evs {
		cmds = append(cmds, l.xadd(l.k.EventFeed(), FeedMax, e))
	}
	cmds = append(cmds, l.c.B().Xtrim().Key(l.k.EventFeed()).Minid().Almost().Threshold(minID(l.now())).Build())
	for _, r := range l.c.DoMulti(ctx, cmds...) {
		if err := r.Error(); err != nil {
			return redisx.Unavailable("record event", err)
		}
	}
	return nil
}
