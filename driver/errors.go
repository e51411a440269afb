package driver

import (
	"errors"
	"fmt"
	"strings"
)

// Error is a failed driver operation. It keeps libvirt's error code so that
// callers (and users) can tell "domain not found" from "host unreachable",
// across the plugin boundary too.
type Error struct {
	Op     string // "migrate", "create domain", …
	Host   string // libvirt URI
	Domain string // may be empty
	// Code and LibvirtDomain are libvirt's virErrorNumber and
	// virErrorDomain; 0 when the error did not come from libvirt.
	Code          int
	LibvirtDomain int
	Err           error
}

func (e *Error) Error() string {
	var b strings.Builder
	b.WriteString(e.Op)
	if e.Domain != "" {
		fmt.Fprintf(&b, " %s", e.Domain)
	}
	if e.Host != "" {
		fmt.Fprintf(&b, " on %s", e.Host)
	}
	if e.Err != nil {
		fmt.Fprintf(&b, ": %v", e.Err)
	}
	return b.String()
}

func (e *Error) Unwrap() error { return e.Err }

// libvirt error numbers virtpool reacts to (virterror.h).
const (
	CodeNoConnect        = 5  // VIR_ERR_NO_CONNECT: host unreachable
	CodeInvalidArg       = 8  // VIR_ERR_INVALID_ARG: bad input
	CodeSystemError      = 38 // VIR_ERR_SYSTEM_ERROR
	CodeRPC              = 39 // VIR_ERR_RPC: connection lost
	CodeNoDomain         = 42 // VIR_ERR_NO_DOMAIN
	CodeOperationInvalid = 55 // VIR_ERR_OPERATION_INVALID
	CodeOperationAborted = 78 // VIR_ERR_OPERATION_ABORTED
)

// CodeOf returns the libvirt error code carried by err, or 0.
func CodeOf(err error) int {
	var e *Error
	if errors.As(err, &e) {
		return e.Code
	}
	return 0
}

// IsNotFound reports whether err says the domain does not exist.
func IsNotFound(err error) bool { return CodeOf(err) == CodeNoDomain }
