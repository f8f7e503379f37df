package sessions

import (
	"context"
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"fmt"
	"strconv"
	"time"

	"github.com/google/uuid"

	"github.com/sessiond/sessiond/audit"
	"github.com/sessiond/sessiond/internal/errcode"
	"github.com/sessiond/sessiond/internal/keys"
	"github.com/sessiond/sessiond/internal/redisx"
	"github.com/sessiond/sessiond/scripts"
)

// Refresh tokens (ACCESS_TOKEN_TTL). A refresh token names its session and
// says which of the session's tokens it is:
//
//	version (1) | uid (16) | sid (16) | generation (4) | secret (32) | MAC (16)
//
// base64url, 114 characters. The session's hash stores only the SHA-256
// digest of the current one, of the one it replaced and when that was spent.
//
// The first token of a session has a random secret. Each successor is
// derived from the token it replaces, secret = HMAC(K, "next" | token), with
// K a key every replica derives from the JWT keyring (tokens.DeriveKeys):
// a replica answering a retry within the grace recomputes the successor the
// first answer carried and checks its digest is the session's current one,
// so concurrent refreshes and a retried lost response all get the same
// successor although nothing but digests is stored.
//
// The MAC (HMAC(K, "mac" | the rest), cut to 128 bits) proves the token was
// issued by this service. That is what lets a spent token of any generation
// be recognised as such without a list of spent digests: a token with a
// valid MAC and a generation below the session's current one can only have
// been issued and then replaced, so after the grace it is reuse, however many
// refreshes ago it was spent. A forged or mangled token fails the MAC and
// costs no Redis call.

const (
	refreshVersion = 1
	refreshBody    = 1 + 16 + 16 + 4 + 32
	refreshLen     = refreshBody + 16
)

// RefreshKeyPurpose is what the keys of Options.RefreshKeys are derived for
// (tokens.DeriveKeys).
const RefreshKeyPurpose = "refresh token v1"

// Errors of refreshing, each with its code (internal/errcode).
var (
	// ErrRefreshInvalid means the token is not one of ours, or its session
	// has ended (signed out, revoked, expired, its account disabled, deleted
	// or its password changed), or it was never current there.
	ErrRefreshInvalid = errcode.New(errcode.Unauthorized, "the refresh token is invalid or expired, or its session has ended")
	// ErrRefreshReused means a token spent before the grace was presented:
	// taken as theft, the session has been ended.
	ErrRefreshReused = errcode.New(errcode.Unauthorized, "this refresh token was used before: the session has been ended")
	// ErrProofRequired means the session is bound to a DPoP key and the
	// request had no valid proof by it (or one whose jti was seen before):
	// nothing was spent.
	ErrProofRequired = errcode.New(errcode.InvalidDPoPProof, "this session is bound to a DPoP key: a refresh needs a new, valid proof by that key")
	// ErrProofReplayed means a sign-in's DPoP proof had a jti seen before.
	ErrProofReplayed = errcode.New(errcode.Invalid, "DPoP: the proof's jti was used before; send a new proof")
	// errKeysDisagree means a grace retry found no key of the ring that
	// derives the session's current token: the replica that refreshed has
	// a signing key this one lacks (a rotation under way).
	errKeysDisagree = errors.New("no refresh key of this replica derives the session's current token")
)

// Proof is a valid DPoP proof (dpop.Verify) a request carried.
type Proof struct {
	// Key is the thumbprint of the proof's key.
	Key string
	// ID is the proof's jti: accepted once per account within Remember.
	ID       string
	Remember time.Duration
}

// Presenter is who presents a refresh token: from where, and the DPoP proof
// of the request, if it had a valid one.
type Presenter struct {
	IP        string
	UserAgent string
	Proof     *Proof
}

// Refreshed is a refreshed session, with its new refresh token, and what
// its new access token says of the account.
type Refreshed struct {
	Session
	Username         string
	AccountCreatedAt time.Time
	// Retry is true when the token had been spent within the grace: the
	// refresh token is the successor it got then.
	Retry bool
}

// Refresh spends a session's refresh token and returns its successor, in
// one step that also records the session's use (it slides the idle timeout,
// never past the absolute end). A token spent within ReuseGrace returns the
// same successor again. A token spent before that ends its session at once
// (recorded as session.reuse_detected with p's ip and user agent) and is
// ErrRefreshReused. ErrRefreshInvalid for anything else that is not the
// session's current token, or a session that has ended; ErrProofRequired
// for a session bound to a DPoP key when p has no proof by it, and then
// nothing is spent. A Redis failure is unavailable with nothing spent (or,
// if Redis spent it but the answer was lost, a retry gets the successor).
func (s *Store) Refresh(ctx context.Context, token string, p Presenter) (Refreshed, error) {
	t, uid, sid, gen, ok := parseRefresh(token)
	if !ok || len(s.o.RefreshKeys) == 0 || !sealedBy(s.o.RefreshKeys, t) {
		return Refreshed{}, ErrRefreshInvalid
	}
	succ := successor(s.o.RefreshKeys[0], t)
	now := s.o.Now().Truncate(time.Millisecond)
	ks := []string{s.k.Session(uid, sid), s.k.SessionIndex(uid), s.k.User(uid), s.k.Events(uid), s.k.SessionUses(uid)}
	thumb, remember := "", "0"
	if p.Proof != nil {
		ks = append(ks, s.proofRecord(uid, p.Proof))
		thumb, remember = p.Proof.Key, millis(p.Proof.Remember)
	}
	reuse := audit.Event{Type: audit.SessionReuseDetected, UserID: uid, SessionID: sid, IP: p.IP, UserAgent: p.UserAgent,
		Detail: "a refresh token spent before the reuse grace was presented again: the session was ended"}
	args := []string{ms(now), millis(s.o.IdleTimeout), millis(s.o.ReuseGrace), digest(t), strconv.FormatUint(uint64(gen), 10),
		digest(succ), p.IP, sid, thumb, remember, audit.Spec(now, reuse), millis(s.slack())}
	rctx, cancel := redisx.Timeout(ctx, s.o.Timeout)
	defer cancel()
	// As a revocation: with WaitReplicas, a spend is acknowledged only once
	// a replica has it, or a failover could bring the spent token back and
	// lose the successor the client now holds.
	res, err := s.revocation(rctx, scripts.Refresh, ks, args).ToArray()
	if err != nil {
		return Refreshed{}, redisx.Unavailable("refresh session", err)
	}
	str := func(i int) string {
		if i >= len(res) {
			return ""
		}
		v, _ := res[i].ToString()
		return v
	}
	switch kind := str(0); kind {
	case "OK", "GRACE":
		r := s.refreshed(uid, sid, str)
		if kind == "GRACE" {
			if succ, err = s.retried(t, str(1)); err != nil {
				return Refreshed{}, redisx.Unavailable("refresh session", err)
			}
			r.Retry = true
		}
		r.RefreshToken = base64.RawURLEncoding.EncodeToString(succ)
		return r, nil
	case "GONE", "UNKNOWN":
		return Refreshed{}, ErrRefreshInvalid
	case "DPOP":
		return Refreshed{}, ErrProofRequired
	case "REUSE":
		s.rememberRevoked(uid, []string{sid})
		s.o.Audit.Feed(ctx, reuse)
		return Refreshed{}, ErrRefreshReused
	default:
		return Refreshed{}, fmt.Errorf("refresh session: unexpected reply %q", kind)
	}
}

// refreshed reads the script's answer of a refresh (str(i) is its i-th
// value) into the session it refreshed.
func (s *Store) refreshed(uid, sid string, str func(int) string) Refreshed {
	num := func(i int) int64 { v, _ := strconv.ParseInt(str(i), 10, 64); return v }
	sess := Session{ID: sid, UserID: uid, DeviceName: str(2), Platform: str(3), UserAgent: str(4), IP: str(5),
		CreatedAt: time.Unix(num(6), 0).UTC(), LastSeenAt: time.UnixMilli(num(7)).UTC(),
		ExpiresAt: time.Unix(num(8), 0).UTC(), DPoPBound: str(9) != ""}
	sess.Assurance = s.raisedHere(uid, sid, assuranceOf(num(6), str(12), str(13), str(14)))
	sess.RefreshExpiresAt = s.refreshExpiry(sess.LastSeenAt, sess.ExpiresAt)
	return Refreshed{Session: sess, Username: str(10), AccountCreatedAt: time.UnixMilli(num(11)).UTC()}
}

// retried is the successor a token spent within the grace got then: the one
// some key of the ring derives whose digest is the session's current one.
func (s *Store) retried(t []byte, current string) ([]byte, error) {
	for _, k := range s.o.RefreshKeys {
		if succ := successor(k, t); digest(succ) == current {
			return succ, nil
		}
	}
	return nil, errKeysDisagree
}

// refreshExpiry is when a refresh token ends unless its session is used:
// min(last use + idle timeout, absolute end).
func (s *Store) refreshExpiry(lastUse, end time.Time) time.Time {
	if idle := lastUse.Add(s.o.IdleTimeout); idle.Before(end) {
		return idle
	}
	return end
}

// refreshFields gives a new session its first refresh token when m asks for
// one (sess.RefreshToken) and its DPoP binding, and returns the hash fields
// that store them.
func (s *Store) refreshFields(sess *Session, m Meta) ([]string, error) {
	if !m.Refresh {
		return nil, nil
	}
	if len(s.o.RefreshKeys) == 0 {
		return nil, errors.New("create session: refresh tokens need RefreshKeys")
	}
	u, err1 := uuid.Parse(sess.UserID)
	sid, err2 := uuid.Parse(sess.ID)
	if err1 != nil || err2 != nil {
		return nil, errors.New("create session: refresh tokens need UUID ids")
	}
	t := make([]byte, refreshLen)
	t[0] = refreshVersion
	copy(t[1:17], u[:])
	copy(t[17:33], sid[:])
	if _, err := rand.Read(t[37:refreshBody]); err != nil {
		return nil, err
	}
	seal(s.o.RefreshKeys[0], t)
	sess.RefreshToken = base64.RawURLEncoding.EncodeToString(t)
	sess.RefreshExpiresAt = s.refreshExpiry(sess.LastSeenAt, sess.ExpiresAt)
	f := []string{keys.SessRefresh, digest(t), keys.SessRefreshGen, "0"}
	if m.Proof != nil {
		sess.DPoPBound = true
		f = append(f, keys.SessDPoPKey, m.Proof.Key)
	}
	return f, nil
}

// proofRecord is the key that records a proof's jti for an account: a
// digest of it, since the jti is client input.
func (s *Store) proofRecord(uid string, p *Proof) string {
	sum := sha256.Sum256([]byte(p.ID))
	return s.k.DPoPProof(uid, hex.EncodeToString(sum[:16]))
}

// parseRefresh reads a refresh token: its bytes, the ids it names and its
// generation. The ids come back canonical, so no client text shapes a key.
func parseRefresh(token string) (t []byte, uid, sid string, gen uint32, ok bool) {
	if len(token) != base64.RawURLEncoding.EncodedLen(refreshLen) {
		return nil, "", "", 0, false
	}
	t, err := base64.RawURLEncoding.Strict().DecodeString(token)
	if err != nil || len(t) != refreshLen || t[0] != refreshVersion {
		return nil, "", "", 0, false
	}
	u, _ := uuid.FromBytes(t[1:17])
	id, _ := uuid.FromBytes(t[17:33])
	return t, u.String(), id.String(), binary.BigEndian.Uint32(t[33:37]), true
}

// seal writes the MAC of t's body by key k.
func seal(k, t []byte) {
	copy(t[refreshBody:], mac(k, "mac", t[:refreshBody])[:refreshLen-refreshBody])
}

// sealedBy reports whether t carries the MAC of one of keys.
func sealedBy(keys [][]byte, t []byte) bool {
	for _, k := range keys {
		if hmac.Equal(t[refreshBody:], mac(k, "mac", t[:refreshBody])[:refreshLen-refreshBody]) {
			return true
		}
	}
	return false
}

// successor is the token that replaces t, derived by key k: the same
// session, the next generation, a secret no one without k can compute.
func successor(k, t []byte) []byte {
	n := make([]byte, refreshLen)
	copy(n, t[:33])
	binary.BigEndian.PutUint32(n[33:37], binary.BigEndian.Uint32(t[33:37])+1)
	copy(n[37:refreshBody], mac(k, "next", t))
	seal(k, n)
	return n
}

func mac(k []byte, label string, msg []byte) []byte {
	m := hmac.New(sha256.New, k)
	m.Write([]byte(label))
	m.Write(msg)
	return m.Sum(nil)
}

// digest is what the session's hash stores of a token (raw SHA-256).
func digest(t []byte) string {
	d := sha256.Sum256(t)
	return string(d[:])
}

func millis(d time.Duration) string { return strconv.FormatInt(d.Milliseconds(), 10) }
