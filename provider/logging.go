package provider

import (
	"context"
	"fmt"
	"io"

	"github.com/hashicorp/go-hclog"
	"github.com/hashicorp/terraform-plugin-log/tflog"
)

// tfLogger is an hclog.Logger (what package pool logs to) whose lines go
// to Terraform's log through tflog with ctx, at their own level.
func tfLogger(ctx context.Context) hclog.Logger {
	l := hclog.NewInterceptLogger(&hclog.LoggerOptions{Output: io.Discard, Level: hclog.Off})
	l.RegisterSink(tfSink{ctx})
	return l
}

type tfSink struct{ ctx context.Context }

func (s tfSink) Accept(name string, level hclog.Level, msg string, args ...any) {
	fields := make(map[string]any, len(args)/2+1)
	for i := 0; i+1 < len(args); i += 2 {
		fields[fmt.Sprint(args[i])] = args[i+1]
	}
	if name != "" {
		fields["logger"] = name
	}
	switch level {
	case hclog.Trace:
		tflog.Trace(s.ctx, msg, fields)
	case hclog.Debug:
		tflog.Debug(s.ctx, msg, fields)
	case hclog.Warn:
		tflog.Warn(s.ctx, msg, fields)
	case hclog.Error:
		tflog.Error(s.ctx, msg, fields)
	default:
		tflog.Info(s.ctx, msg, fields)
	}
}
