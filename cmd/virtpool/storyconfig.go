package main

import (
	"bytes"
	"fmt"

	"github.com/hashicorp/hcl/v2"
	"github.com/hashicorp/hcl/v2/hclsyntax"
	"github.com/hashicorp/hcl/v2/hclwrite"
	"github.com/zclconf/go-cty/cty"
)

// withPluginKey returns the Nomad Autoscaler agent configuration src
// (file names it in errors) with key = value added to the config of its
// one blockType block ("target", "apm") whose driver is driver: the story
// runs the demo's own configuration, with what only a run has (its event
// log). The agent replaces a plugin's whole config when it merges files,
// so a second -config file cannot add one key.
func withPluginKey(src []byte, file, blockType, driver, key, value string) ([]byte, error) {
	f, diags := hclsyntax.ParseConfig(src, file, hcl.InitialPos)
	if diags.HasErrors() {
		return nil, diags
	}
	var found []*hclsyntax.ObjectConsExpr
	for _, b := range f.Body.(*hclsyntax.Body).Blocks {
		if d := b.Body.Attributes["driver"]; b.Type != blockType || d == nil || !isString(d.Expr, driver) {
			continue
		}
		where := fmt.Sprintf("%s: %s %q (driver %q)", b.DefRange().String(), blockType, b.Labels, driver)
		attr, ok := b.Body.Attributes["config"]
		if !ok {
			return nil, fmt.Errorf("%s: no config", where)
		}
		obj, ok := attr.Expr.(*hclsyntax.ObjectConsExpr)
		if !ok {
			return nil, fmt.Errorf("%s: config is no { key = value } object", where)
		}
		for _, it := range obj.Items {
			if isString(it.KeyExpr, key) { // a bare key is its name as a string
				return nil, fmt.Errorf("%s: config sets %s already", where, key)
			}
		}
		found = append(found, obj)
	}
	if len(found) != 1 {
		return nil, fmt.Errorf("%s: want one %s block with driver = %q, found %d", file, blockType, driver, len(found))
	}
	// On a line of its own before the object's closing brace (a newline
	// ends the item before); Format indents it.
	at := found[0].SrcRange.End.Byte - 1
	before := bytes.TrimRight(src[:at], " \t")
	var b bytes.Buffer
	b.Write(before)
	if !bytes.HasSuffix(before, []byte("\n")) {
		b.WriteByte('\n')
	}
	fmt.Fprintf(&b, "%s = %s\n", key, hclwrite.TokensForValue(cty.StringVal(value)).Bytes())
	b.Write(src[at:])
	return hclwrite.Format(b.Bytes()), nil
}

// isString says whether expr is the string s.
func isString(expr hclsyntax.Expression, s string) bool {
	v, diags := expr.Value(nil)
	return !diags.HasErrors() && v.Type() == cty.String && v.IsKnown() && !v.IsNull() && v.AsString() == s
}
