package app

import (
	"context"
	"errors"
	"net/http"
	"strconv"
	"time"

	"github.com/gofiber/fiber/v2"

	"github.com/sessiond/sessiond/internal/errcode"
)

// Problem is an RFC 9457 problem details body. Code is the stable,
// machine-readable part; Detail is for humans and never holds secrets.
type Problem struct {
	Type   string `json:"type"`
	Title  string `json:"title"`
	Status int    `json:"status"`
	Detail string `json:"detail"`
	Code   string `json:"code"`
	// MFAToken and Methods answer a sign-in that needs its second factor
	// (mfa_required).
	MFAToken string   `json:"mfa_token,omitempty"`
	Methods  []string `json:"methods,omitempty"`
}

// Codes only HTTP has: the request itself was too big or too slow.
const (
	codePayloadTooLarge = "payload_too_large"
	codeHeadersTooLarge = "headers_too_large"
	codeRequestTimeout  = "request_timeout"
	// codeMethodNotAllowed: the path exists, the method does not.
	codeMethodNotAllowed = "method_not_allowed"
)

// statusOf is the one table from a code to its HTTP status, and the detail
// shown when the error has none of its own to show.
var statusOf = map[string]struct {
	status int
	detail string
}{
	errcode.Invalid:                  {400, "the request is malformed"},
	errcode.Unauthorized:             {401, "this needs a valid Authorization: Bearer token"},
	errcode.InvalidCredentials:       {401, "the username or password is wrong"},
	errcode.InvalidDPoPProof:         {401, "this needs a valid DPoP proof by the session's key"},
	errcode.AccountDisabled:          {403, "this account is disabled"},
	errcode.MFARequired:              {401, "the password is right; now send the second factor to /v1/auth/login/mfa with the mfa_token"},
	errcode.ReauthenticationRequired: {403, "this needs a recent sign-in: re-authenticate with POST /v1/auth/reauthenticate"},
	errcode.StepUpRequired:           {403, "this needs a two-factor session: step up with POST /v1/auth/reauthenticate and a code"},
	errcode.Forbidden:                {403, "this needs the admin role"},
	errcode.NotFound:                 {404, "no such resource"},
	codeMethodNotAllowed:             {405, "this path does not take that method"},
	codeRequestTimeout:               {408, "the request took too long to arrive"},
	errcode.UsernameTaken:            {409, "that username is taken"},
	errcode.LastAdmin:                {409, "this is the last enabled admin"},
	codePayloadTooLarge:              {413, "the request body is over 64 KiB"},
	errcode.TooManyAttempts:          {429, "too many failed attempts; try again later"},
	codeHeadersTooLarge:              {431, "the request headers are too large"},
	errcode.Internal:                 {500, "something went wrong on our side"},
	errcode.Unavailable:              {503, "the session store is unreachable; try again shortly"},
}

// The app's own errors: what it finds wrong with a request before any store
// is asked.
var (
	errForbidden    = errcode.New(errcode.Forbidden, "this needs the admin role")
	errNotFound     = errcode.New(errcode.NotFound, "no such resource")
	errNoToken      = errcode.New(errcode.Unauthorized, "this needs an Authorization: Bearer token")
	errBadHeader    = errcode.New(errcode.Unauthorized, "the Authorization header must be: Bearer <token>")
	errSessionEnded = errcode.New(errcode.Unauthorized, "the session has ended (signed out, revoked or expired)")
	errAccountGone  = errcode.New(errcode.Unauthorized, "the account no longer exists")
	// errLoginRaced is answered when a login kept racing account changes.
	errLoginRaced = errcode.New(errcode.Unavailable, "the account kept changing during sign-in; try again")
)

func invalid(detail string) error { return errcode.New(errcode.Invalid, detail) }

// fiberCodes are the codes of the errors Fiber and fasthttp raise themselves.
var fiberCodes = map[int]string{
	fiber.StatusRequestEntityTooLarge:       codePayloadTooLarge,
	fiber.StatusRequestHeaderFieldsTooLarge: codeHeadersTooLarge,
	fiber.StatusRequestTimeout:              codeRequestTimeout,
	fiber.StatusBadRequest:                  errcode.Invalid,
}

// retryAfter is an error that says when to try again (too many attempts).
type retryAfter interface {
	error
	RetryAfter() time.Duration
}

// challenger is an error whose 401 challenges for another scheme than
// Bearer (introspection clients use HTTP Basic).
type challenger interface {
	error
	Challenge() string
}

// toProblem turns any error into the problem it is answered with.
func toProblem(err error) (Problem, time.Duration) {
	code := errcode.Of(err)
	detail := errcode.Message(err)
	var fe *fiber.Error
	if errors.As(err, &fe) && fiberCodes[fe.Code] != "" {
		code, detail = fiberCodes[fe.Code], ""
	}
	entry, ok := statusOf[code]
	if !ok {
		code, detail, entry = errcode.Internal, "", statusOf[errcode.Internal]
	}
	if code == errcode.Internal || detail == "" {
		detail = entry.detail
	}
	var wait time.Duration
	var ra retryAfter
	if errors.As(err, &ra) {
		wait = ra.RetryAfter()
	} else if code == errcode.Unavailable || code == errcode.TooManyAttempts {
		wait = time.Second
	}
	p := Problem{Type: "urn:sessiond:problem:" + code, Title: http.StatusText(entry.status),
		Status: entry.status, Detail: detail, Code: code}
	var mfa *mfaRequiredError
	if errors.As(err, &mfa) {
		p.MFAToken, p.Methods = mfa.token, mfa.methods
	}
	return p, wait
}

// answerError is the one path every error is answered by, whether the API
// renders it as problem+json or the console as a page: it finds the problem,
// gives the response its request id (for the answers fasthttp gives before
// any middleware runs: 413, 431), its status and its Retry-After, counts a
// Redis failure and logs a 5xx (whose text stays out of the response). It
// returns the problem and the seconds of Retry-After (0 when none was set).
func (h *handlers) answerError(c *fiber.Ctx, err error) (Problem, int) {
	if requestID(c) == "" {
		setResponseMeta(c, "")
	}
	p, wait := toProblem(err)
	if p.Code == errcode.Unavailable {
		h.Metrics.RedisError(errors.Is(err, context.DeadlineExceeded))
	}
	if p.Status >= 500 {
		h.Log.Error("request failed", "request_id", requestID(c), "method", c.Method(), "path", c.Path(), "status", p.Status, "err", err)
	}
	retry := 0
	if wait > 0 {
		retry = max(int((wait+time.Second-1)/time.Second), 1)
		c.Set(fiber.HeaderRetryAfter, strconv.Itoa(retry))
	}
	c.Status(p.Status)
	return p, retry
}

// errorHandler renders the API's errors as problem+json, with the
// WWW-Authenticate a 401 needs.
func errorHandler(h *handlers) fiber.ErrorHandler {
	return func(c *fiber.Ctx, err error) error {
		p, _ := h.answerError(c, err)
		var ch challenger
		switch {
		case p.Status == fiber.StatusUnauthorized && errors.As(err, &ch):
			c.Set(fiber.HeaderWWWAuthenticate, ch.Challenge())
		case p.Status == fiber.StatusUnauthorized && p.Code == errcode.Unauthorized && c.Get(fiber.HeaderAuthorization) != "":
			// RFC 6750: a token was presented but is bad, expired or revoked.
			c.Set(fiber.HeaderWWWAuthenticate, `Bearer error="invalid_token"`)
		case p.Status == fiber.StatusUnauthorized:
			c.Set(fiber.HeaderWWWAuthenticate, "Bearer")
		}
		c.Set(fiber.HeaderContentType, "application/problem+json")
		body, _ := jsonMarshal(p)
		return c.Send(body)
	}
}
