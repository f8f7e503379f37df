package audit

import (
	"context"
	"encoding/json"
	"fmt"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/sessiond/sessiond/internal/redisx"
	"github.com/sessiond/sessiond/scripts"
)

// Kinds of refusal: what was refused.
const (
	KindSignIn         = "sign-in"
	KindPasswordChange = "password-change" // a wrong current password
	KindSecondFactor   = "second-factor"   // a wrong TOTP or recovery code (mfa.failed)
)

// Bounds of refusal records. A record stands for every refusal of one type
// and kind in one failure window (of one account, or of all names that are
// no account); what it keeps of the client is cut to a few hundred bytes
// (about 550 with two different long user agents, 420 with one), so an
// account costs at most about 5.5 KB of refusals however long it is
// attacked, the names that are no account about 11 KB together, and the
// refusal feed about 90 bytes an entry: 180 KB.
const (
	RefusalsPerUser = 10
	AnonRefusals    = 20
	RefusalFeedMax  = 2000
	// maxRefusalUA and maxRefusalIP are the bytes of a user agent and an
	// address a record keeps, for its first and its last refusal.
	maxRefusalUA = 128
	maxRefusalIP = 64
)

// Refusal is a refused sign-in (or password check) to record.
type Refusal struct {
	Type string // LoginFailed, LoginThrottled or MFAFailed
	// UserID is the account; "" for a name that is no account, recorded in
	// the feed only and without the name (it may be a password typed in the
	// wrong field).
	UserID    string
	Kind      string // KindSignIn, KindPasswordChange
	IP        string
	UserAgent string
}

// Refused records a refusal: it counts in the record of its account (or of
// the names that are no account), type and kind whose window is still open,
// or starts one that lasts window (LOGIN_FAILURE_WINDOW). A record that
// starts goes to the refusal feed too, as a second, best effort step (as
// Feed); its count is read from the record, so it is current in the feed.
// Records older than MaxAge go, and an account keeps its newest
// RefusalsPerUser.
func (l *Log) Refused(ctx context.Context, r Refusal, window time.Duration) error {
	key, keep := l.k.AnonRefusals(), AnonRefusals
	if r.UserID != "" {
		key, keep = l.k.Refusals(r.UserID), RefusalsPerUser
	}
	now := l.now()
	rctx, cancel := redisx.Timeout(ctx, l.timeout)
	defer cancel()
	res, err := scripts.Refusal.Exec(rctx, l.c, []string{key}, []string{
		unixMS(now), strconv.FormatInt(window.Milliseconds(), 10), r.Type, r.Kind,
		cut(r.IP, maxRefusalIP), cut(r.UserAgent, maxRefusalUA), strconv.Itoa(keep),
		unixMS(now.Add(-MaxAge)), strconv.FormatInt(MaxAge.Milliseconds(), 10),
	}).ToArray()
	if err == nil && len(res) != 2 {
		err = fmt.Errorf("unexpected reply of %d values", len(res))
	}
	if err != nil {
		return redisx.Unavailable("record refusal", err)
	}
	id, _ := res[0].ToString()
	if started, _ := res[1].AsInt64(); started == 1 {
		if err := l.c.DoMulti(rctx,
			l.c.B().Xadd().Key(l.k.RefusalFeed()).Maxlen().Almost().Threshold(strconv.Itoa(RefusalFeedMax)).Id("*").
				FieldValue().FieldValue(fType, r.Type).FieldValue(fUser, r.UserID).FieldValue(fRecord, id).Build(),
			l.c.B().Xtrim().Key(l.k.RefusalFeed()).Minid().Almost().Threshold(minID(now)).Build(),
		)[0].Error(); err != nil {
			l.missed.Add(1)
		}
	}
	return nil
}

// fRecord is the refusal feed's field naming the record an entry stands for.
const fRecord = "r"

func unixMS(t time.Time) string { return strconv.FormatInt(t.UnixMilli(), 10) }

// cut shortens s to at most n bytes, on a character boundary.
func cut(s string, n int) string {
	if len(s) <= n {
		return s
	}
	s = s[:n]
	for len(s) > 0 && !utf8.ValidString(s) {
		s = s[:len(s)-1]
	}
	return s
}

// record is a refusal record as refusal.lua keeps it.
type record struct {
	Type  string   `json:"t"`
	Kind  string   `json:"k"`
	Count int64    `json:"n"`
	First []string `json:"f"` // unix ms, ip, user agent
	Last  []string `json:"l"` // the same, without the user agent when it is the first's
}

// decodeRecord reads a record; false when it is malformed or older than
// MaxAge at now (the records' hash is trimmed only when it is written).
func decodeRecord(s string, now time.Time) (record, bool) {
	var r record
	if json.Unmarshal([]byte(s), &r) != nil || len(r.First) != 3 || len(r.Last) < 2 {
		return record{}, false
	}
	if len(r.Last) == 2 {
		r.Last = append(r.Last, r.First[2])
	}
	return r, r.at(r.First).After(now.Add(-MaxAge))
}

func (record) at(p []string) time.Time {
	ms, _ := strconv.ParseInt(p[0], 10, 64)
	return time.UnixMilli(ms).UTC()
}

// event is the record as an event: at, ip and user agent are the first
// refusal's; the detail says how many and the last one's.
func (r record) event(uid string) Event {
	return Event{Type: r.Type, At: r.at(r.First), UserID: uid, IP: r.First[1], UserAgent: r.First[2],
		Detail: r.detail(uid == "")}
}

// kindNouns name the kinds in details.
var kindNouns = map[string]string{KindSignIn: "sign-in", KindPasswordChange: "password change"}

// detail is, e.g., "5 failed sign-ins; first from 192.0.2.1 (curl/8.5) at
// 2026-01-02T03:04:05Z, last from 192.0.2.9 (Mozilla/5.0) at …".
func (r record) detail(anon bool) string {
	noun, ok := kindNouns[r.Kind]
	if !ok {
		noun = strings.ReplaceAll(r.Kind, "-", " ")
	}
	if r.Count != 1 {
		noun += "s"
	}
	verb := "failed"
	if r.Type == LoginThrottled {
		verb = "throttled"
	}
	d := fmt.Sprintf("%d %s %s", r.Count, verb, noun)
	if anon {
		d += " of names that are no account"
	}
	if r.Count > 1 {
		d += "; first from " + r.from(r.First) + ", last from " + r.from(r.Last)
	}
	return d
}

func (r record) from(p []string) string {
	s := p[1]
	if s == "" {
		s = "an unknown address"
	}
	if p[2] != "" {
		s += " (" + p[2] + ")"
	}
	return s + " at " + r.at(p).Format(time.RFC3339)
}
