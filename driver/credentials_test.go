package driver

import (
	"reflect"
	"strings"
	"testing"
)

func TestCredentialsFromEnv(t *testing.T) {
	creds := map[string]Credential{"qemu+tls://h1/system": {Username: "virtpool", Password: "s3cret"}}
	entry, err := CredentialsEnvEntry(creds)
	if err != nil {
		t.Fatal(err)
	}
	_, value, _ := strings.Cut(entry, "=")
	tests := []struct {
		name, env string
		want      map[string]Credential
		wantErr   bool
	}{
		{"unset", "", nil, false},
		{"what CredentialsEnvEntry writes", value, creds, false},
		{"not JSON", `{"qemu+tls://h1/system": s3cret}`, nil, true},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Setenv(CredentialsEnv, tc.env)
			got, err := CredentialsFromEnv()
			if tc.wantErr {
				if err == nil || strings.Contains(err.Error(), "s3cret") {
					t.Fatalf("error %v: want one that does not show the value", err)
				}
				return
			}
			if err != nil || !reflect.DeepEqual(got, tc.want) {
				t.Fatalf("got %v, %v; want %v", got, err, tc.want)
			}
		})
	}
	if e, err := CredentialsEnvEntry(nil); e != "" || err != nil {
		t.Fatalf("no logins: entry %q, %v; want none", e, err)
	}
}
