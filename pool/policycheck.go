package pool

import "fmt"

// Names of a migration policy's watermarks and target, as the provider's
// virtpool_migration_policy attributes and a cluster policy's target block
// keys spell them.
const (
	PolicyKeyCPULow     = "cpu_low"
	PolicyKeyCPUHigh    = "cpu_high"
	PolicyKeyMemoryLow  = "memory_low"
	PolicyKeyMemoryHigh = "memory_high"
	PolicyKeyTarget     = "target_utilisation"
)

// FieldError is a bad value of one setting, named by Field (an attribute
// or a configuration key).
type FieldError struct {
	Field string
	Msg   string
}

func (e FieldError) Error() string { return e.Msg }

// Check reports every watermark of p that is not 0 < low < high ≤ 1, and a
// target_utilisation outside a pair of watermarks (low ≤ target ≤ high).
// One rule for the provider and the autoscaler plugins; each message names
// the setting and its value.
func (p Policy) Check() []FieldError {
	var errs []FieldError
	ok := true
	for _, w := range []struct {
		lowKey, highKey string
		lo, hi          float64
	}{{PolicyKeyCPULow, PolicyKeyCPUHigh, p.CPULow, p.CPUHigh}, {PolicyKeyMemoryLow, PolicyKeyMemoryHigh, p.MemoryLow, p.MemoryHigh}} {
		var e *FieldError
		switch {
		case !(w.lo > 0):
			e = &FieldError{w.lowKey, fmt.Sprintf("%s must be above 0, got %v.", w.lowKey, w.lo)}
		case !(w.hi <= 1):
			e = &FieldError{w.highKey, fmt.Sprintf("%s must be at most 1 (a fraction of the host), got %v.", w.highKey, w.hi)}
		case !(w.lo < w.hi):
			e = &FieldError{w.highKey, fmt.Sprintf("%s (%v) must be below %s (%v).", w.lowKey, w.lo, w.highKey, w.hi)}
		case p.TargetUtilisation < w.lo || p.TargetUtilisation > w.hi:
			if ok { // once
				errs = append(errs, FieldError{PolicyKeyTarget, fmt.Sprintf(
					"%s %v must lie between the low and high watermarks (%s %v … %s %v): set it in that range, or move the watermarks.",
					PolicyKeyTarget, p.TargetUtilisation, w.lowKey, w.lo, w.highKey, w.hi)})
				ok = false
			}
		}
		if e != nil {
			errs = append(errs, *e)
		}
	}
	return errs
}
