package provider

import (
	"context"
	"fmt"
	"os"
	"regexp"
	"time"

	"github.com/hashicorp/terraform-plugin-framework/schema/validator"

	"github.com/virtpool/virtpool/pool"
)

// String validators of the provider's own formats. Each reports at the
// attribute it validates, so Terraform's diagnostic points at the line to fix.

// hostNameValidator checks a host name (a key of hosts, or a host attribute).
type hostNameValidator struct{}

func (hostNameValidator) Description(context.Context) string {
	return "a host name: letters, digits, '_', '.', '-', at most 63"
}
func (v hostNameValidator) MarkdownDescription(ctx context.Context) string { return v.Description(ctx) }
func (hostNameValidator) ValidateString(_ context.Context, req validator.StringRequest, resp *validator.StringResponse) {
	if req.ConfigValue.IsNull() || req.ConfigValue.IsUnknown() {
		return
	}
	if err := pool.ValidHostName(req.ConfigValue.ValueString()); err != nil {
		resp.Diagnostics.AddAttributeError(req.Path, "Invalid host name", err.Error())
	}
}

// libvirtURIValidator checks that a libvirt connection URI parses.
type libvirtURIValidator struct{}

func (libvirtURIValidator) Description(context.Context) string {
	return "a libvirt URI such as qemu:///system or qemu+tls://host/system"
}
func (v libvirtURIValidator) MarkdownDescription(ctx context.Context) string {
	return v.Description(ctx)
}
func (libvirtURIValidator) ValidateString(_ context.Context, req validator.StringRequest, resp *validator.StringResponse) {
	if req.ConfigValue.IsNull() || req.ConfigValue.IsUnknown() {
		return
	}
	if err := pool.ValidLibvirtURI(req.ConfigValue.ValueString()); err != nil {
		resp.Diagnostics.AddAttributeError(req.Path, "Invalid libvirt URI", fmt.Sprintf("%s: %v", req.Path, err))
	}
}

// migrationURIValidator checks a QEMU migration URI.
type migrationURIValidator struct{}

func (migrationURIValidator) Description(context.Context) string {
	return "a QEMU migration URI such as tcp://10.0.0.2"
}
func (v migrationURIValidator) MarkdownDescription(ctx context.Context) string {
	return v.Description(ctx)
}
func (migrationURIValidator) ValidateString(_ context.Context, req validator.StringRequest, resp *validator.StringResponse) {
	if req.ConfigValue.IsNull() || req.ConfigValue.IsUnknown() {
		return
	}
	if err := validMigrationURI(req.ConfigValue.ValueString()); err != nil {
		resp.Diagnostics.AddAttributeError(req.Path, "Invalid migration URI", err.Error())
	}
}

// durationValidator checks a Go duration string, at least min.
type durationValidator struct{ min time.Duration }

func (v durationValidator) Description(context.Context) string {
	return fmt.Sprintf("a duration such as 30s or 5m, at least %s", v.min)
}
func (v durationValidator) MarkdownDescription(ctx context.Context) string { return v.Description(ctx) }
func (v durationValidator) ValidateString(_ context.Context, req validator.StringRequest, resp *validator.StringResponse) {
	if req.ConfigValue.IsNull() || req.ConfigValue.IsUnknown() {
		return
	}
	d, err := time.ParseDuration(req.ConfigValue.ValueString())
	switch {
	case err != nil:
		resp.Diagnostics.AddAttributeError(req.Path, "Invalid duration", fmt.Sprintf("%q: want a duration such as 30s or 5m: %v", req.ConfigValue.ValueString(), err))
	case d < v.min:
		resp.Diagnostics.AddAttributeError(req.Path, "Invalid duration", fmt.Sprintf("%s is shorter than %s", d, v.min))
	}
}

// checkLocalFile says why path is not a readable regular file on this
// machine, or nil. Used for image files when every host the file is used on
// is local (a remote host's files cannot be seen from here).
func checkLocalFile(p string) error {
	fi, err := os.Stat(p)
	if err != nil {
		return err
	}
	if !fi.Mode().IsRegular() {
		return fmt.Errorf("%s is not a regular file", p)
	}
	return nil
}

// absPathRE: image paths are paths on the hosts, so they must be absolute.
var absPathRE = regexpMust(`^/`)

func regexpMust(s string) *regexp.Regexp { return regexp.MustCompile(s) }
