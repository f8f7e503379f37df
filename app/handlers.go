package app

import (
	"bytes"
	"cmp"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"mime"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/gofiber/fiber/v2"
	"github.com/google/uuid"

	"github.com/sessiond/sessiond/admin"
	"github.com/sessiond/sessiond/audit"
	"github.com/sessiond/sessiond/internal/errcode"
	"github.com/sessiond/sessiond/sessions"
	"github.com/sessiond/sessiond/tokens"
	"github.com/sessiond/sessiond/users"
)

// Caps on what a client may store in its session. user_agent is what the
// server saw, so it is cut rather than refused.
const (
	maxDeviceName = 128
	maxPlatform   = 32
	maxUserAgent  = 512
)

// Wire shapes, as app/openapi.json describes them.
type sessionJSON struct {
	ID         string   `json:"id"`
	DeviceName string   `json:"device_name"`
	Platform   string   `json:"platform"`
	UserAgent  string   `json:"user_agent"`
	IP         string   `json:"ip"`
	CreatedAt  string   `json:"created_at"`
	LastSeenAt string   `json:"last_seen_at"`
	ExpiresAt  string   `json:"expires_at"`
	Current    bool     `json:"current"`
	DPoPBound  bool     `json:"dpop_bound,omitempty"`
	AAL        int      `json:"aal"`
	AMR        []string `json:"amr"`
	AuthTime   string   `json:"auth_time"`
}

type userJSON struct {
	ID        string `json:"id"`
	Username  string `json:"username"`
	Role      string `json:"role"`
	Disabled  bool   `json:"disabled"`
	CreatedAt string `json:"created_at"`
}

func rfc3339(t time.Time) string { return t.UTC().Format(time.RFC3339) }

func toSessionJSON(s sessions.Session, currentID string) sessionJSON {
	return sessionJSON{ID: s.ID, DeviceName: s.DeviceName, Platform: s.Platform, UserAgent: s.UserAgent,
		IP: s.IP, CreatedAt: rfc3339(s.CreatedAt), LastSeenAt: rfc3339(s.LastSeenAt),
		ExpiresAt: rfc3339(s.ExpiresAt), Current: currentID != "" && s.ID == currentID, DPoPBound: s.DPoPBound,
		AAL: s.AAL, AMR: s.AMR, AuthTime: rfc3339(s.AuthTime)}
}

func toSessionsJSON(list []sessions.Session, currentID string) fiber.Map {
	out := make([]sessionJSON, len(list))
	for i, s := range list {
		out[i] = toSessionJSON(s, currentID)
	}
	return fiber.Map{"sessions": out}
}

func toUserJSON(u users.User) userJSON {
	return userJSON{ID: u.ID, Username: u.Username, Role: u.Role, Disabled: u.Disabled, CreatedAt: rfc3339(u.CreatedAt)}
}

// decodeBody reads a JSON object into v, answering 400 with the field at fault.
// Unknown fields are ignored so older servers accept newer clients.
func decodeBody(c *fiber.Ctx, v any) error {
	mt, _, err := mime.ParseMediaType(c.Get(fiber.HeaderContentType))
	if err != nil || mt != fiber.MIMEApplicationJSON {
		return invalid("Content-Type must be application/json")
	}
	body := c.Body()
	if len(bytes.TrimSpace(body)) == 0 {
		return invalid("the request body is empty; send a JSON object")
	}
	dec := json.NewDecoder(bytes.NewReader(body))
	if err := dec.Decode(v); err != nil {
		var te *json.UnmarshalTypeError
		if errors.As(err, &te) && te.Field != "" {
			return invalid(fmt.Sprintf("%s: must be a %s", te.Field, jsonKind(te.Type.String())))
		}
		if errors.As(err, &te) {
			return invalid("the request body must be a JSON object")
		}
		return invalid("the request body is not valid JSON")
	}
	if _, err := dec.Token(); err != io.EOF {
		return invalid("the request body must hold one JSON object and nothing after it")
	}
	return nil
}

func jsonKind(goType string) string {
	switch goType {
	case "string", "*string":
		return "string"
	case "bool", "*bool":
		return "boolean"
	}
	return "JSON object"
}

func required(field string, v *string) error {
	if v == nil || *v == "" {
		return invalid(field + ": is required")
	}
	return nil
}

// inField names the request field a password rule was broken in: the users
// store says "password: …", the request may call it new_password.
func inField(field string, err error) error {
	if errors.Is(err, users.ErrPasswordTooShort) || errors.Is(err, users.ErrPasswordTooLong) {
		_, rule, _ := strings.Cut(err.Error(), ": ")
		return invalid(field + ": " + rule)
	}
	return err
}

// formValue is a field of a form-encoded body (never of the query string).
func formValue(c *fiber.Ctx, name string) string {
	return string(c.Request().PostArgs().Peek(name))
}

func truncateUTF8(s string, n int) string {
	if len(s) <= n {
		return s
	}
	s = s[:n]
	for !utf8.ValidString(s) {
		s = s[:len(s)-1]
	}
	return s
}

// maxStaleRetries bounds re-checks of a login that raced with a credential change.
const maxStaleRetries = 3

// outcomes name the outcome of a credential check (a sign-in, a client's
// authentication) for the metrics, by error code.
var outcomes = map[string]string{
	errcode.InvalidCredentials: "failed", errcode.TooManyAttempts: "throttled",
	errcode.AccountDisabled: "disabled", errcode.Unavailable: "unavailable",
	errcode.MFARequired: "mfa_required",
}

// outcomeOf is the outcome of a credential check that ended with err: ""
// for an error that decided nothing about the credential (a bad request, a
// bug), which is not counted.
func outcomeOf(err error) string {
	if err == nil {
		return "succeeded"
	}
	return outcomes[errcode.Of(err)]
}

// device is what a sign-in's client says of its device.
type device struct {
	Name     string `json:"name"`
	Platform string `json:"platform"`
}

// signInMeta is what a sign-in records of its client: the device it named
// (checked), the user agent and address seen, and refresh tokens (with the
// request's DPoP proof) when ACCESS_TOKEN_TTL is set.
func (h *handlers) signInMeta(c *fiber.Ctx, d *device) (sessions.Meta, error) {
	meta := sessions.Meta{UserAgent: truncateUTF8(c.Get(fiber.HeaderUserAgent), maxUserAgent), IP: h.clientIP(c)}
	if d != nil {
		meta.DeviceName, meta.Platform = d.Name, d.Platform
	}
	if utf8.RuneCountInString(meta.DeviceName) > maxDeviceName || !utf8.ValidString(meta.DeviceName) {
		return meta, invalid(fmt.Sprintf("device.name: must be valid text of at most %d characters", maxDeviceName))
	}
	if utf8.RuneCountInString(meta.Platform) > maxPlatform || !utf8.ValidString(meta.Platform) {
		return meta, invalid(fmt.Sprintf("device.platform: must be valid text of at most %d characters", maxPlatform))
	}
	return meta, h.withRefresh(c, &meta)
}

func (h *handlers) login(c *fiber.Ctx) error {
	var req struct {
		Username *string `json:"username"`
		Password *string `json:"password"`
		Device   *device `json:"device"`
	}
	if err := decodeBody(c, &req); err != nil {
		return err
	}
	if err := required("username", req.Username); err != nil {
		return err
	}
	if err := required("password", req.Password); err != nil {
		return err
	}
	meta, err := h.signInMeta(c, req.Device)
	if err != nil {
		return err
	}
	sess, token, err := h.openSession(c, *req.Username, *req.Password, meta)
	if err != nil {
		return err
	}
	return c.Status(fiber.StatusCreated).JSON(h.signedIn(sess, token, sess.CreatedAt))
}

// openSession checks a username and password and starts a session with its
// token: the core of a sign-in, through the API or the console, and the one
// place its outcome is counted. For an account with a second factor it
// starts no session: it answers *mfaRequiredError with the mfa_token that
// finishSignIn takes with the factor.
func (h *handlers) openSession(c *fiber.Ctx, username, password string, meta sessions.Meta) (_ sessions.Session, _ string, err error) {
	defer func() { h.Metrics.Login(outcomeOf(err)) }()
	ctx := c.UserContext()
	for range maxStaleRetries {
		u, err := h.Users.Authenticate(ctx, username, password, h.actor(c))
		if err != nil {
			return sessions.Session{}, "", err
		}
		if u.HasTOTP() {
			token, err := h.Users.StartMFA(ctx, users.MFAPending{UserID: u.ID, CredentialVersion: u.CredentialVersion,
				DeviceName: meta.DeviceName, Platform: meta.Platform})
			if err != nil {
				return sessions.Session{}, "", err
			}
			return sessions.Session{}, "", &mfaRequiredError{token: token, methods: mfaMethods}
		}
		sess, token, err := h.issue(c, u, u.CredentialVersion, meta)
		switch {
		case errors.Is(err, sessions.ErrStale), errors.Is(err, errcode.ErrUserNotFound):
			// A password change, disable, force-logout or deletion landed
			// between the password check and the session: check again against
			// the new state (a deleted account's check fails as any unknown
			// name's does).
			continue
		case err != nil:
			return sessions.Session{}, "", err
		}
		return sess, token, nil
	}
	return sessions.Session{}, "", errLoginRaced
}

// issue starts a session of account u, whose credentials were checked at
// version cv, and signs its token.
func (h *handlers) issue(c *fiber.Ctx, u users.User, cv string, meta sessions.Meta) (sessions.Session, string, error) {
	sess, err := h.Sessions.Create(c.UserContext(), u.ID, cv, meta)
	if err != nil {
		return sessions.Session{}, "", err
	}
	token, err := h.Tokens.Sign(tokens.Claims{UserID: sess.UserID, SessionID: sess.ID,
		IssuedAt: sess.CreatedAt, ExpiresAt: h.accessExpiry(sess, sess.CreatedAt), Username: u.Username, AccountCreatedAt: u.CreatedAt})
	if err != nil {
		return sessions.Session{}, "", err
	}
	return sess, token, nil
}

func (h *handlers) logout(c *fiber.Ctx) error {
	if err := h.endOwnSession(c); err != nil {
		return err
	}
	return c.SendStatus(fiber.StatusNoContent)
}

// endOwnSession revokes the caller's own session (signing out, through the
// API or the console); one already gone is no error.
func (h *handlers) endOwnSession(c *fiber.Ctx) error {
	cl := callerOf(c)
	err := h.Sessions.Revoke(c.UserContext(), cl.UserID, cl.SessionID, h.actor(c))
	switch {
	case err == nil:
		h.Metrics.Revoked("logout", 1)
	case !errors.Is(err, sessions.ErrNotFound):
		return err
	}
	return nil
}

func (h *handlers) logoutAll(c *fiber.Ctx) error {
	n, err := h.Sessions.RevokeAll(c.UserContext(), callerOf(c).UserID, "", h.actor(c))
	if err != nil {
		return err
	}
	h.Metrics.Revoked("logout_all", n)
	return c.JSON(fiber.Map{"revoked": n})
}

// me answers from the token and the session alone: the username and creation
// time never change, the session holds the role (kept current by role
// changes), and a live session means the account is enabled (disabling it
// ends them all).
func (h *handlers) me(c *fiber.Ctx) error {
	cl := callerOf(c)
	// The hottest answer of all, written without encoding/json's reflection:
	// byte for byte what c.JSON(userJSON{…}) writes (TestUserJSONAsEncodingJSON).
	var buf [256]byte
	c.Response().SetBody(appendUserJSON(buf[:0], cl.UserID, cl.Username, cmp.Or(cl.Role, users.RoleUser), false, cl.AccountCreatedAt))
	c.Response().Header.SetContentType(fiber.MIMEApplicationJSON)
	return nil
}

// appendUserJSON appends what json.Marshal makes of a userJSON.
func appendUserJSON(b []byte, id, username, role string, disabled bool, created time.Time) []byte {
	b = append(b, `{"id":`...)
	b = appendJSONString(b, id)
	b = append(b, `,"username":`...)
	b = appendJSONString(b, username)
	b = append(b, `,"role":`...)
	b = appendJSONString(b, role)
	b = append(b, `,"disabled":`...)
	b = strconv.AppendBool(b, disabled)
	b = append(b, `,"created_at":"`...)
	b = created.UTC().AppendFormat(b, time.RFC3339)
	return append(b, `"}`...)
}

// appendJSONString appends s as json.Marshal writes it: a string of plain
// characters as it is, any other (escapes, HTML characters, non-ASCII)
// by json.Marshal itself.
func appendJSONString(b []byte, s string) []byte {
	for i := 0; i < len(s); i++ {
		if c := s[i]; c < 0x20 || c > 0x7e || c == '"' || c == '\\' || c == '<' || c == '>' || c == '&' {
			q, _ := json.Marshal(s)
			return append(b, q...)
		}
	}
	b = append(b, '"')
	b = append(b, s...)
	return append(b, '"')
}

func (h *handlers) changePassword(c *fiber.Ctx) error {
	var req struct {
		Current *string `json:"current_password"`
		New     *string `json:"new_password"`
	}
	if err := decodeBody(c, &req); err != nil {
		return err
	}
	if err := required("current_password", req.Current); err != nil {
		return err
	}
	if err := required("new_password", req.New); err != nil {
		return err
	}
	if _, err := h.changeOwnPassword(c, *req.Current, *req.New); err != nil {
		return err
	}
	return c.SendStatus(fiber.StatusNoContent)
}

// changeOwnPassword changes the caller's password, checking the current
// one, and ends every other session of the account: PUT /v1/me/password and
// the console's form. It returns how many sessions ended. A new password
// that breaks a rule is errcode.Invalid naming new_password; a wrong current
// password counts against the failed-login limits.
func (h *handlers) changeOwnPassword(c *fiber.Ctx, current, next string) (int, error) {
	// A new password that breaks a rule is refused before the current one is
	// checked, so it costs no attempt.
	if err := users.ValidPassword(next); err != nil {
		return 0, inField("new_password", err)
	}
	cl := callerOf(c)
	ctx := c.UserContext()
	by := h.actor(c)
	u, err := h.Users.CheckPassword(ctx, cl.UserID, current, by)
	if err != nil {
		return 0, err
	}
	update, err := h.Users.CheckChange(users.Change{Password: &next})
	if err != nil {
		return 0, inField("new_password", err)
	}
	// The new hash and the revocation of every other session land together,
	// and only if no other change (another password change, an admin's
	// reset) landed since the current password was checked.
	n, err := h.Sessions.ChangeAccount(ctx, cl.UserID, cl.SessionID, update, u.CredentialVersion,
		by.Counted(audit.PasswordChanged, cl.UserID, cl.SessionID, "{count} other sessions ended"))
	if err != nil {
		return 0, err
	}
	h.Metrics.Revoked("password_change", n)
	return n, nil
}

func (h *handlers) listSessions(c *fiber.Ctx) error {
	cl := callerOf(c)
	list, err := h.Sessions.List(c.UserContext(), cl.UserID)
	if err != nil {
		return err
	}
	return c.JSON(toSessionsJSON(list, cl.SessionID))
}

func (h *handlers) revokeSession(c *fiber.Ctx) error {
	id, err := pathID(c, "id")
	if err != nil {
		return err
	}
	if err := h.Sessions.Revoke(c.UserContext(), callerOf(c).UserID, id, h.actor(c)); err != nil {
		return err
	}
	h.Metrics.Revoked("revoke_one", 1)
	return c.SendStatus(fiber.StatusNoContent)
}

func (h *handlers) revokeOtherSessions(c *fiber.Ctx) error {
	cl := callerOf(c)
	n, err := h.Sessions.RevokeAll(c.UserContext(), cl.UserID, cl.SessionID, h.actor(c))
	if err != nil {
		return err
	}
	h.Metrics.Revoked("revoke_others", n)
	return c.JSON(fiber.Map{"revoked": n})
}

// pathID reads an id path parameter. Ids are UUIDs; anything else names
// nothing (and must not reach a Redis key, where "}" would move a hash tag).
func pathID(c *fiber.Ctx, name string) (string, error) {
	id := c.Params(name)
	if !validID(id) {
		return "", errNotFound
	}
	return id, nil
}

// validID reports whether s is an id as this service makes them: a UUID in
// its 36-character form.
func validID(s string) bool {
	_, err := uuid.Parse(s)
	return err == nil && len(s) == 36
}

// Administration.

func (h *handlers) createUser(c *fiber.Ctx) error {
	var req struct {
		Username *string `json:"username"`
		Password *string `json:"password"`
		Role     string  `json:"role"`
	}
	if err := decodeBody(c, &req); err != nil {
		return err
	}
	if err := required("username", req.Username); err != nil {
		return err
	}
	if err := required("password", req.Password); err != nil {
		return err
	}
	u, err := h.Users.Create(c.UserContext(), *req.Username, *req.Password, req.Role, h.actor(c))
	if err != nil {
		return inField("password", err)
	}
	return c.Status(fiber.StatusCreated).JSON(toUserJSON(u))
}

func (h *handlers) findUsers(c *fiber.Ctx) error {
	ctx := c.UserContext()
	if c.Context().QueryArgs().Has("username") {
		list := []userJSON{}
		u, err := h.Users.FindByUsername(ctx, c.Query("username"))
		switch {
		case err == nil:
			list = append(list, toUserJSON(u))
		case !errors.Is(err, errcode.ErrUserNotFound):
			return err
		}
		return c.JSON(fiber.Map{"users": list})
	}
	limit, err := pageLimit(c)
	if err != nil {
		return err
	}
	page, next, err := h.Users.List(ctx, c.Query("cursor"), limit)
	if err != nil {
		return err
	}
	list := make([]userJSON, len(page))
	for i, u := range page {
		list[i] = toUserJSON(u)
	}
	return c.JSON(fiber.Map{"users": list, "next_cursor": next})
}

func (h *handlers) getUser(c *fiber.Ctx) error {
	id, err := pathID(c, "id")
	if err != nil {
		return err
	}
	u, err := h.Users.Get(c.UserContext(), id)
	if err != nil {
		return err
	}
	return c.JSON(toUserJSON(u))
}

func (h *handlers) patchUser(c *fiber.Ctx) error {
	id, err := pathID(c, "id")
	if err != nil {
		return err
	}
	var req struct {
		Disabled *bool   `json:"disabled"`
		Role     *string `json:"role"`
		Password *string `json:"password"`
	}
	if err := decodeBody(c, &req); err != nil {
		return err
	}
	u, ended, err := h.admin().Change(c.UserContext(), id,
		users.Change{Role: req.Role, Disabled: req.Disabled, Password: req.Password}, h.actor(c))
	if err != nil {
		return inField("password", err)
	}
	kind := "password_reset"
	if req.Disabled != nil && *req.Disabled {
		kind = "disable"
	}
	h.Metrics.Revoked(kind, ended)
	return c.JSON(toUserJSON(u))
}

func (h *handlers) admin() admin.Admin {
	return admin.Admin{Users: h.Users, Sessions: h.Sessions, Passkeys: h.Passkeys}
}

// adminTarget is the account named in the path (API or console), which must
// exist: errcode.ErrUserNotFound otherwise.
func (h *handlers) adminTarget(c *fiber.Ctx) (users.User, error) {
	id, err := pathID(c, "id")
	if err != nil {
		return users.User{}, errcode.ErrUserNotFound
	}
	return h.Users.Get(c.UserContext(), id)
}

func (h *handlers) userSessions(c *fiber.Ctx) error {
	u, err := h.adminTarget(c)
	if err != nil {
		return err
	}
	list, err := h.Sessions.List(c.UserContext(), u.ID)
	if err != nil {
		return err
	}
	return c.JSON(toSessionsJSON(list, ""))
}

func (h *handlers) forceLogout(c *fiber.Ctx) error {
	id, err := pathID(c, "id")
	if err != nil {
		return err
	}
	n, err := h.admin().ForceLogout(c.UserContext(), id, h.actor(c))
	if err != nil {
		return err
	}
	h.Metrics.Revoked("force_logout", n)
	return c.JSON(fiber.Map{"revoked": n})
}

func (h *handlers) forceLogoutOne(c *fiber.Ctx) error {
	u, err := h.adminTarget(c)
	if err != nil {
		return err
	}
	id := u.ID
	sid, err := pathID(c, "sid")
	if err != nil {
		return err
	}
	if err := h.Sessions.Revoke(c.UserContext(), id, sid, h.actor(c)); err != nil {
		return err
	}
	h.Metrics.Revoked("force_logout_one", 1)
	return c.SendStatus(fiber.StatusNoContent)
}
