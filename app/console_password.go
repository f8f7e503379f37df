package app

import (
	"errors"
	"strings"

	"github.com/gofiber/fiber/v2"

	"github.com/sessiond/sessiond/internal/errcode"
	"github.com/sessiond/sessiond/sessions"
)

// Changing my password: the current one and a new one, as PUT
// /v1/me/password takes them (changeOwnPassword); every other session of
// the account ends, this one stays.

type passwordData struct {
	// Wrong is the field the error is about: "current" or "new".
	Wrong string
}

func (h *handlers) consolePasswordPage(c *fiber.Ctx) error {
	return h.renderConsole(c, fiber.StatusOK, "password", consolePage{Title: "Change your password", Nav: "password",
		Data: passwordData{}})
}

func (h *handlers) consoleChangePassword(c *fiber.Ctx) error {
	current, next := formValue(c, "current_password"), formValue(c, "new_password")
	refuse := func(status int, wrong, msg string) error {
		return h.renderConsole(c, status, "password", consolePage{Title: "Change your password", Nav: "password",
			Error: msg, Data: passwordData{Wrong: wrong}})
	}
	switch {
	case current == "":
		return refuse(fiber.StatusUnprocessableEntity, "current", "Enter your current password.")
	case next == "":
		return refuse(fiber.StatusUnprocessableEntity, "new", "Enter a new password.")
	}
	n, err := h.changeOwnPassword(c, current, next)
	switch code := errcode.Of(err); {
	case err == nil:
		return c.Redirect(doneURL(c, consolePath+"/", "password-changed", n, ""), fiber.StatusSeeOther)
	case errors.Is(err, sessions.ErrStale):
		// Another change (an admin's reset, this password changed in
		// another tab) landed first; it ended this session too, most likely.
		return refuse(fiber.StatusConflict, "", "Your password was changed somewhere else while you were typing, so this change was not made.")
	case code == errcode.InvalidCredentials:
		return refuse(fiber.StatusUnprocessableEntity, "current", "Your current password is wrong.")
	case code == errcode.Invalid:
		return refuse(fiber.StatusBadRequest, "new", passwordMessage(err))
	case code == errcode.TooManyAttempts:
		p, retry := h.answerError(c, err)
		return refuse(p.Status, "current", "Too many wrong passwords. Try again in "+waitWords(retry)+".")
	}
	return err
}

// passwordMessage says which password rule a new password broke.
func passwordMessage(err error) string {
	msg := errcode.Message(err)
	for _, field := range []string{"new_password: ", "password: "} {
		if rule, ok := strings.CutPrefix(msg, field); ok {
			return "The new password " + rule + "."
		}
	}
	return sentence(msg)
}
