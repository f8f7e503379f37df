// Package admin is what an administrator does to accounts, by the same
// rules whether it comes through the HTTP API or the command line: the last
// enabled admin stays, a change that ends sessions ends them in the same step
// as the change, and each change is recorded with who made it. It
// orchestrates the users and sessions stores; it knows nothing about HTTP or
// flags.
package admin

import (
	"context"
	"errors"
	"fmt"
	"strings"

	"github.com/sessiond/sessiond/audit"
	"github.com/sessiond/sessiond/internal/errcode"
	"github.com/sessiond/sessiond/internal/keys"
	"github.com/sessiond/sessiond/passkeys"
	"github.com/sessiond/sessiond/sessions"
	"github.com/sessiond/sessiond/users"
)

// Admin changes accounts.
type Admin struct {
	Users    *users.Store
	Sessions *sessions.Store
	// Passkeys is nil when passkeys are not configured.
	Passkeys *passkeys.Store
}

// Change applies an admin's change to an account (role, disabled, password)
// and returns the account as it is then and how many sessions the change
// ended. Demoting or disabling the last enabled admin is users.ErrLastAdmin,
// with nothing changed. An unknown account is errcode.ErrUserNotFound before
// anything of the change is checked: a new password's hash (bcrypt, the
// dearest step) is only made for an account that exists.
func (a Admin) Change(ctx context.Context, id string, ch users.Change, by audit.Actor) (users.User, int, error) {
	before, err := a.Users.Get(ctx, id)
	if err != nil {
		return users.User{}, 0, err
	}
	update, err := a.Users.CheckChange(ch)
	if err != nil {
		return users.User{}, 0, err
	}
	evs := changeEvents(by, before, update)
	// Demoting or disabling an enabled admin must leave another one: the
	// account leaves the set of enabled admins first, atomically, or the
	// change is refused; afterwards the set is brought in line with the
	// account, whatever happened.
	if ch.RemovesAdmin() {
		if err := a.Users.ReleaseAdmin(ctx, id); err != nil {
			return users.User{}, 0, err
		}
	}
	ended := 0
	switch {
	case update.EndsSessions():
		// Disabling or a new password ends every session in the same step,
		// the admin's own included when they reset their own password.
		ended, err = a.Sessions.ChangeAccount(ctx, id, "", update, "", evs...)
	case !update.Empty():
		// A new role reaches the account's live sessions in the same step.
		err = a.Sessions.UpdateAccount(ctx, id, update, evs...)
	}
	if serr := a.Users.SyncAdmin(ctx, id); err == nil {
		err = serr
	}
	if err != nil {
		return users.User{}, 0, err
	}
	u, err := a.Users.Get(ctx, id)
	return u, ended, err
}

// changeEvents are the events of a change to an account as it was before:
// only what changes is an event.
func changeEvents(by audit.Actor, before users.User, u keys.AccountUpdate) []audit.Event {
	var evs []audit.Event
	if u.Role != nil && *u.Role != before.Role {
		evs = append(evs, by.Event(audit.AccountRoleChanged, before.ID, "", before.Role+" → "+*u.Role))
	}
	if u.Disabled != nil && *u.Disabled != before.Disabled {
		typ := audit.AccountEnabled
		if *u.Disabled {
			typ = audit.AccountDisabled
		}
		evs = append(evs, by.Event(typ, before.ID, "", ""))
	}
	if u.PasswordHash != "" {
		evs = append(evs, by.Event(audit.PasswordChanged, before.ID, "", "reset by an admin"))
	}
	if u.EndsSessions() {
		evs = append(evs, by.Counted(audit.SessionsRevokedAll, before.ID, "", sessions.SessionsEnded))
	}
	return evs
}

// Delete deletes an account: every session ends at once (in the same step
// as its account.deleted event), then the username is freed; its history
// stays. It returns how many sessions ended. The last enabled admin cannot
// be deleted (users.ErrLastAdmin).
func (a Admin) Delete(ctx context.Context, id string, by audit.Actor) (int, error) {
	u, err := a.Users.Get(ctx, id)
	if err != nil {
		return 0, err
	}
	if err := a.Users.ReleaseAdmin(ctx, id); err != nil {
		return 0, err
	}
	n, err := a.Sessions.DeleteAccount(ctx, id, by)
	if err != nil {
		// Not deleted: it stays an admin if it was one.
		_ = a.Users.SyncAdmin(ctx, id)
		return 0, err
	}
	return n, a.Users.Forget(ctx, u)
}

// ResetMFA removes every second factor of an account (a user who lost the
// device): its TOTP secret and recovery codes, then its passkeys when
// Passkeys is set. The account's sessions stay: they were signed in with
// the factors the user had. errcode.ErrUserNotFound for no such account.
func (a Admin) ResetMFA(ctx context.Context, id string, by audit.Actor) error {
	if err := a.Users.RemoveMFA(ctx, id, by); err != nil {
		return err
	}
	if a.Passkeys != nil {
		_, err := a.Passkeys.RemoveAll(ctx, id, by)
		return err
	}
	return nil
}

// ForceLogout ends every session of an account and returns how many.
func (a Admin) ForceLogout(ctx context.Context, id string, by audit.Actor) (int, error) {
	return a.Sessions.RevokeAll(ctx, id, "", by)
}

// Lookup finds the account an operator names at the command line: by id or
// by username (case-insensitive), or explicitly as id:ID or name:NAME (no id
// or username holds a colon). An argument that is one account's id and
// another account's username names neither: that is an errcode.Invalid error
// naming both, so a username chosen to look like someone's id cannot turn a
// command against that account.
func (a Admin) Lookup(ctx context.Context, arg string) (users.User, error) {
	if id, ok := strings.CutPrefix(arg, "id:"); ok {
		return a.Users.Get(ctx, id)
	}
	if name, ok := strings.CutPrefix(arg, "name:"); ok {
		return a.Users.FindByUsername(ctx, name)
	}
	byID, err := a.Users.Get(ctx, arg)
	if err != nil && !errors.Is(err, errcode.ErrUserNotFound) {
		return users.User{}, err
	}
	byName, nameErr := a.Users.FindByUsername(ctx, arg)
	if nameErr != nil && !errors.Is(nameErr, errcode.ErrUserNotFound) {
		return users.User{}, nameErr
	}
	switch {
	case err == nil && nameErr == nil && byID.ID != byName.ID:
		return users.User{}, errcode.New(errcode.Invalid, fmt.Sprintf(
			"%q is the id of the account %q and the username of another account (id %s): say id:%s or name:%s",
			arg, byID.Username, byName.ID, arg, arg))
	case err == nil:
		return byID, nil
	}
	return byName, nameErr
}
