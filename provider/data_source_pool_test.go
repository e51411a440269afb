package provider

import (
	"context"
	"testing"

	"github.com/hashicorp/terraform-plugin-framework/datasource"
)

// The data sources are exercised on the lab by TestAccPool (virtpool_pool)
// and TestAccHostMaintenance (virtpool_hosts); here, their schemas.
func TestDataSourceSchemas(t *testing.T) {
	ctx := context.Background()
	cases := []struct {
		ds       datasource.DataSource
		typeName string
		attrs    []string
	}{
		{NewPoolDataSource(), "virtpool_pool", []string{"name", "hosts", "size", "desired_size", "members", "policy_mode"}},
		{NewHostsDataSource(), "virtpool_hosts", []string{"hosts"}},
	}
	for _, c := range cases {
		var md datasource.MetadataResponse
		c.ds.Metadata(ctx, datasource.MetadataRequest{ProviderTypeName: "virtpool"}, &md)
		if md.TypeName != c.typeName {
			t.Errorf("type name %q, want %q", md.TypeName, c.typeName)
		}
		var resp datasource.SchemaResponse
		c.ds.Schema(ctx, datasource.SchemaRequest{}, &resp)
		if diags := resp.Schema.ValidateImplementation(ctx); diags.HasError() {
			t.Fatalf("%s: %v", c.typeName, diags)
		}
		for _, a := range c.attrs {
			if _, ok := resp.Schema.Attributes[a]; !ok {
				t.Errorf("%s lacks %s", c.typeName, a)
			}
		}
	}
}
