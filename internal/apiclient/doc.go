// Package apiclient is the Go client oapi-codegen generates from
// internal/host/openapi.json, as users generate SDKs from /v1/openapi.json. It is
// kept here to prove the document makes a client that compiles and decodes
// real answers (see its tests); nothing in Hindsight imports it.
//
// Regenerate it after changing the document:
//
//	go generate ./internal/apiclient
package apiclient

//go:generate go tool oapi-codegen -config oapi-codegen.yaml ../../internal/host/openapi.json
