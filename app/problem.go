package app

import (
	"errors"
	"log/slog"
	"net/http"
	"strconv"
	"time"

	"github.com/gofiber/fiber/v2"

	"github.com/sessiond/sessiond/sessions"
	"github.com/sessiond/sessiond/users"
)

// Problem is an RFC 9457 problem details body. Code is the stable,
// machine-readable part; Detail is for humans and never holds secrets.
type Problem struct {
	Type   string `json:"type"`
	Title  string `json:"title"`
	Status int    `json:"status"`
	Detail string `json:"detail"`
	Code   string `json:"code"`

	// Headers the response needs (WWW-Authenticate, Retry-After).
	header map[string]string
}

func (p *Problem) Error() string { return p.Code + ": " + p.Detail }

func problem(status int, code, detail string) *Problem {
	return &Problem{Type: "urn:sessiond:problem:" + code, Title: http.StatusText(status),
		Status: status, Detail: detail, Code: code}
}

func (p *Problem) with(k, v string) *Problem {
	if p.header == nil {
		p.header = map[string]string{}
	}
	p.header[k] = v
	return p
}

func invalid(detail string) *Problem { return problem(400, "invalid_request", detail) }

// unauthorized is a 401. tokenSent adds error="invalid_token" (RFC 6750):
// a token was presented but is bad, expired or revoked.
func unauthorized(detail string, tokenSent bool) *Problem {
	h := "Bearer"
	if tokenSent {
		h = `Bearer error="invalid_token"`
	}
	return problem(401, "unauthorized", detail).with(fiber.HeaderWWWAuthenticate, h)
}

var (
	errInvalidCredentials = problem(401, "invalid_credentials", "the username or password is wrong").
				with(fiber.HeaderWWWAuthenticate, "Bearer")
	errAccountDisabled = problem(403, "account_disabled", "this account is disabled")
	errForbidden       = problem(403, "forbidden", "this needs the admin role")
	errNotFound        = problem(404, "not_found", "no such resource")
	errUnavailable     = problem(503, "unavailable", "the session store is unreachable; try again shortly").
				with(fiber.HeaderRetryAfter, "1")
)

// toProblem is the one mapping from the packages' errors to HTTP.
func toProblem(err error) *Problem {
	var p *Problem
	var tooMany *users.TooManyAttemptsError
	var fe *fiber.Error
	switch {
	case errors.As(err, &p):
		return p
	case errors.As(err, &tooMany):
		secs := int((tooMany.RetryAfter + time.Second - 1) / time.Second)
		return problem(429, "too_many_attempts", "too many failed logins; try again later").
			with(fiber.HeaderRetryAfter, strconv.Itoa(max(secs, 1)))
	case errors.Is(err, sessions.ErrUnavailable), errors.Is(err, users.ErrUnavailable):
		return errUnavailable
	case errors.Is(err, users.ErrInvalidCredentials):
		return errInvalidCredentials
	case errors.Is(err, users.ErrAccountDisabled), errors.Is(err, sessions.ErrAccountDisabled):
		return errAccountDisabled
	case errors.Is(err, users.ErrUsernameTaken):
		return problem(409, "username_taken", "that username is taken")
	case errors.Is(err, users.ErrLastAdmin):
		return problem(409, "last_admin", "this is the last enabled admin: make another admin first")
	case errors.Is(err, sessions.ErrStale):
		// A password change whose check of the current password raced with
		// another change or an admin's reset: that one stands.
		return problem(401, "invalid_credentials", "the password was changed by another request while this one was checked").
			with(fiber.HeaderWWWAuthenticate, "Bearer")
	case errors.Is(err, users.ErrNotFound), errors.Is(err, sessions.ErrNotFound), errors.Is(err, sessions.ErrUserNotFound):
		return errNotFound
	case errors.Is(err, users.ErrInvalidUsername):
		return invalid("username: " + err.Error())
	case errors.Is(err, users.ErrInvalidRole):
		return invalid("role: " + err.Error())
	case errors.Is(err, users.ErrInvalidCursor):
		return invalid("cursor: " + err.Error())
	case errors.As(err, &fe):
		switch fe.Code {
		case fiber.StatusRequestEntityTooLarge:
			return problem(413, "payload_too_large", "the request body is over 64 KiB")
		case fiber.StatusNotFound:
			return errNotFound
		case fiber.StatusMethodNotAllowed:
			return problem(405, "method_not_allowed", "this path does not take that method")
		case fiber.StatusRequestHeaderFieldsTooLarge:
			return problem(431, "headers_too_large", "the request headers are too large")
		case fiber.StatusRequestTimeout:
			return problem(408, "request_timeout", "the request took too long to arrive")
		case fiber.StatusBadRequest:
			return invalid("the request is malformed")
		}
	}
	return problem(500, "internal", "something went wrong on our side")
}

// errorHandler writes every error as problem+json. Unexpected errors are
// logged; their text stays out of the response.
func errorHandler(log *slog.Logger) fiber.ErrorHandler {
	return func(c *fiber.Ctx, err error) error {
		if requestID(c) == "" {
			setResponseMeta(c)
		}
		p := toProblem(err)
		if p.Status >= 500 {
			log.Error("request failed", "request_id", requestID(c), "method", c.Method(), "path", c.Path(), "status", p.Status, "err", err)
		}
		for k, v := range p.header {
			c.Set(k, v)
		}
		c.Status(p.Status)
		c.Set(fiber.HeaderContentType, "application/problem+json")
		body, _ := jsonMarshal(p)
		return c.Send(body)
	}
}
