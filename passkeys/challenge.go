package passkeys

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"strconv"

	"github.com/go-webauthn/webauthn/protocol"
	"github.com/go-webauthn/webauthn/webauthn"
)

// A begun ceremony is sealed into its challenge id rather than stored:
// AES-GCM (internal/seal) under a context that names the kind of ceremony,
// so a challenge begun for one kind does not even open as another, and the
// account it is bound to is hidden from the client. Any replica with the
// keys opens it. What makes it single-use is the spent mark that the
// finishing script writes (keys.Layout.PasskeyChallengeUsed).

// kind is what a ceremony is for.
type kind string

const (
	kindRegister kind = "register"
	kindLogin    kind = "login"
	kindReauth   kind = "reauth"
)

// maxChallengeID bounds what is opened: a sealed state is about 200 bytes.
const maxChallengeID = 1024

// state is a begun ceremony.
type state struct {
	// Challenge is the challenge, base64url, as the client data carries it.
	Challenge string `json:"c"`
	// UserID is the account the ceremony is bound to; "" for a sign-in with
	// a discoverable credential, whose account the credential names.
	UserID string `json:"u,omitempty"`
	// Expires is when it can no longer be finished (unix ms).
	Expires int64 `json:"e"`
}

func sealContext(k kind) string { return "sessiond passkey challenge\x00" + string(k) }

// begin seals a ceremony of kind k, bound to uid, over the challenge
// go-webauthn made.
func (s *Store) begin(k kind, uid string, sess *webauthn.SessionData) (string, error) {
	b, err := json.Marshal(state{Challenge: sess.Challenge, UserID: uid, Expires: s.o.Now().Add(ChallengeTTL).UnixMilli()})
	if err != nil {
		return "", err
	}
	return s.ring.Seal(b, sealContext(k))
}

// open returns the ceremony of kind k a challenge id seals, unless it is
// not one (forged, altered, of another kind, sealed with a key no longer
// configured) or has expired: ErrUnauthorized. Whether it was used is the
// finishing script's to say.
func (s *Store) open(k kind, id string) (state, error) {
	if len(id) > maxChallengeID {
		return state{}, refused("an oversized challenge id")
	}
	b, err := s.ring.Open(id, sealContext(k))
	if err != nil {
		return state{}, refused("a challenge id that does not open")
	}
	var st state
	if err := json.Unmarshal(b, &st); err != nil || st.Challenge == "" {
		return state{}, refused("a malformed challenge state")
	}
	if now := s.o.Now().UnixMilli(); now > st.Expires {
		return state{}, refused(fmt.Sprintf("a challenge expired %d ms ago", now-st.Expires))
	}
	return st, nil
}

// session is what go-webauthn checks a response against: this ceremony's
// challenge and account, user verification required.
func (s *Store) session(st state, uid string, params []protocol.CredentialParameter) webauthn.SessionData {
	return webauthn.SessionData{Challenge: st.Challenge, RelyingPartyID: s.o.RPID, UserID: []byte(uid),
		UserVerification: protocol.VerificationRequired, CredParams: params}
}

// spentKey is the mark that the challenge was used, in uid's slot.
func (s *Store) spentKey(uid string, st state) string {
	sum := sha256.Sum256([]byte("sessiond passkey challenge\x00" + st.Challenge))
	return s.k.PasskeyChallengeUsed(uid, hex.EncodeToString(sum[:16]))
}

// spentFor is how long the spent mark of a challenge lives (ms): until it
// has expired on every replica's clock.
func (s *Store) spentFor(st state) string {
	left := max(st.Expires-s.o.Now().UnixMilli(), 1)
	return strconv.FormatInt(left+maxSkew.Milliseconds(), 10)
}
