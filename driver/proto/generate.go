// Package proto is the gRPC wire form of driver.Driver, used by package
// driver/plugin. The .pb.go files are generated; edit driver.proto and run
// `go generate ./driver/proto` (needs protoc; the Go plugins come from go.mod's
// tool directives, so their versions are pinned).
package proto

//go:generate sh -c "protoc --plugin=protoc-gen-go=$(go tool -n protoc-gen-go) --plugin=protoc-gen-go-grpc=$(go tool -n protoc-gen-go-grpc) --go_out=. --go_opt=paths=source_relative --go-grpc_out=. --go-grpc_opt=paths=source_relative driver.proto"
