// Package errcode gives sessiond's domain errors a stable, machine-readable
// code (the "code" of the API's problem details). The package that raises an
// error owns it and its code, except the few below that several stores raise
// alike; app/ holds the one table from code to HTTP status. It knows nothing
// about HTTP.
package errcode

import "errors"

// The codes. app/ maps each to an HTTP status.
const (
	Invalid            = "invalid_request"
	Unauthorized       = "unauthorized"
	InvalidCredentials = "invalid_credentials"
	InvalidDPoPProof   = "invalid_dpop_proof"
	// MFARequired: the password was right; a second factor is needed.
	MFARequired = "mfa_required"
	// ReauthenticationRequired: the action needs a recent authentication.
	ReauthenticationRequired = "reauthentication_required"
	// StepUpRequired: the route needs a two-factor (aal 2) session.
	StepUpRequired  = "step_up_required"
	AccountDisabled = "account_disabled"
	Forbidden       = "forbidden"
	NotFound        = "not_found"
	UsernameTaken   = "username_taken"
	LastAdmin       = "last_admin"
	TooManyAttempts = "too_many_attempts"
	Unavailable     = "unavailable"
	Internal        = "internal"
)

// Errors more than one store raises, defined once so a caller tests for one
// value whichever store it called.
var (
	// ErrUserNotFound means the account does not exist (any more).
	ErrUserNotFound = New(NotFound, "no such user")
	// ErrAccountDisabled means the account is disabled.
	ErrAccountDisabled = New(AccountDisabled, "this account is disabled")
	// ErrInvalidCursor means a page cursor this service did not issue.
	ErrInvalidCursor = New(Invalid, "cursor: is not one this service issued")
)

// Error is a domain error with a code. Message is safe to show a client: it
// never holds a secret.
type Error struct {
	Code    string
	Message string
}

func (e *Error) Error() string { return e.Message }

// ErrorCode makes Error a Coder.
func (e *Error) ErrorCode() string { return e.Code }

// New returns an Error; use it for sentinel values.
func New(code, message string) *Error { return &Error{Code: code, Message: message} }

// Coder is any error that carries a code of its own (an Error, or a type with
// more to say, such as how long to wait).
type Coder interface {
	error
	ErrorCode() string
}

// Of returns the code of the first error in err's chain that has one, and
// Internal when none has: an unexpected error.
func Of(err error) string {
	var c Coder
	if errors.As(err, &c) {
		return c.ErrorCode()
	}
	return Internal
}

// Message returns the client-safe message of the first error in err's chain
// that has a code, and "" when none has (an unexpected error's text stays in
// the logs).
func Message(err error) string {
	var c Coder
	if errors.As(err, &c) {
		return c.Error()
	}
	return ""
}
