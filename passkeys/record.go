package passkeys

import (
	"encoding/base64"
	"encoding/json"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/go-webauthn/webauthn/protocol"
	"github.com/go-webauthn/webauthn/webauthn"
)

// How a credential is stored: one field of the account's passkeys hash
// (keys.Layout.Passkeys), named by the credential id (base64url), whose
// value is "<signature counter> <last used, unix ms> <record as JSON>". The
// two numbers come first so the script that accepts an assertion
// (scripts/passkey_use.lua) reads and rewrites them without decoding the
// JSON; the JSON is what webauthn.Credential needs to check an assertion
// (not the attestation, which is checked once at registration and not
// kept), plus the name and the creation time.

// record is what never changes after a registration.
type record struct {
	Name    string `json:"n"`
	Created int64  `json:"c"` // unix ms
	// PublicKey is the COSE key, as the authenticator gave it.
	PublicKey         []byte                            `json:"k"`
	AttestationType   string                            `json:"at,omitempty"`
	AttestationFormat string                            `json:"af,omitempty"`
	Transports        []protocol.AuthenticatorTransport `json:"t,omitempty"`
	// Flags are the authenticator data flags at registration (backup
	// eligibility must not change later).
	Flags      byte                             `json:"f"`
	AAGUID     []byte                           `json:"g,omitempty"`
	Attachment protocol.AuthenticatorAttachment `json:"a,omitempty"`
}

// stored is a credential as read back.
type stored struct {
	field    string // the credential id, base64url
	id       []byte
	count    uint32
	lastUsed int64 // unix ms
	rec      record
}

// newRecord is what is stored of a credential that registered.
func newRecord(c *webauthn.Credential, name string, now time.Time) record {
	return record{Name: name, Created: now.UnixMilli(), PublicKey: c.PublicKey,
		AttestationType: c.AttestationType, AttestationFormat: c.AttestationFormat, Transports: c.Transport,
		Flags: byte(c.Flags.ProtocolValue()), AAGUID: c.Authenticator.AAGUID, Attachment: c.Authenticator.Attachment}
}

// encode is a credential's value in the hash.
func encode(count uint32, lastUsed int64, r record) (string, error) {
	b, err := json.Marshal(r)
	if err != nil {
		return "", err
	}
	return strconv.FormatUint(uint64(count), 10) + " " + strconv.FormatInt(lastUsed, 10) + " " + string(b), nil
}

// decode reads a credential's field and value.
func decode(field, v string) (stored, error) {
	st := stored{field: field}
	bad := func(what string) (stored, error) {
		return stored{}, fmt.Errorf("passkeys: the stored credential %s has a malformed %s", field, what)
	}
	var err error
	if st.id, err = base64.RawURLEncoding.DecodeString(field); err != nil {
		return bad("id")
	}
	count, rest, ok := strings.Cut(v, " ")
	used, js, ok2 := strings.Cut(rest, " ")
	if !ok || !ok2 {
		return bad("value")
	}
	n, err := strconv.ParseUint(count, 10, 32)
	if err != nil {
		return bad("counter")
	}
	st.count = uint32(n)
	if st.lastUsed, err = strconv.ParseInt(used, 10, 64); err != nil {
		return bad("time of use")
	}
	if err := json.Unmarshal([]byte(js), &st.rec); err != nil {
		return bad("record")
	}
	return st, nil
}

// credential is what go-webauthn checks an assertion against.
func (st stored) credential() webauthn.Credential {
	return webauthn.Credential{
		ID: st.id, PublicKey: st.rec.PublicKey,
		AttestationType: st.rec.AttestationType, AttestationFormat: st.rec.AttestationFormat,
		Transport: st.rec.Transports, Flags: webauthn.NewCredentialFlags(protocol.AuthenticatorFlags(st.rec.Flags)),
		Authenticator: webauthn.Authenticator{AAGUID: st.rec.AAGUID, SignCount: st.count, Attachment: st.rec.Attachment},
	}
}

func (st stored) descriptor() protocol.CredentialDescriptor {
	return protocol.CredentialDescriptor{Type: protocol.PublicKeyCredentialType, CredentialID: st.id, Transport: st.rec.Transports}
}

func (st stored) passkey() Passkey {
	return Passkey{ID: st.field, Name: st.rec.Name, CreatedAt: time.UnixMilli(st.rec.Created).UTC(),
		LastUsedAt: time.UnixMilli(st.lastUsed).UTC()}
}

// account is an account as go-webauthn sees it: the user handle is the
// account id's bytes.
type account struct {
	id, name string
	creds    []stored
}

func (a account) WebAuthnID() []byte          { return []byte(a.id) }
func (a account) WebAuthnName() string        { return a.name }
func (a account) WebAuthnDisplayName() string { return a.name }
func (a account) WebAuthnCredentials() []webauthn.Credential {
	out := make([]webauthn.Credential, len(a.creds))
	for i, st := range a.creds {
		out[i] = st.credential()
	}
	return out
}

func descriptors(have []stored) []protocol.CredentialDescriptor {
	out := make([]protocol.CredentialDescriptor, len(have))
	for i, st := range have {
		out[i] = st.descriptor()
	}
	return out
}
