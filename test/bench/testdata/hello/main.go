// Command hello is the hello-world aws-lambda-go bootstrap that the cold
// starts of clusterkeys' functions are measured against (test/bench): it
// answers every HTTP API event with 200 "hello". It is built with the flags
// of `make lambda`.
package main

import (
	"context"

	"github.com/aws/aws-lambda-go/events"
	"github.com/aws/aws-lambda-go/lambda"
)

func main() {
	lambda.Start(func(context.Context, events.APIGatewayV2HTTPRequest) (events.APIGatewayV2HTTPResponse, error) {
		return events.APIGatewayV2HTTPResponse{StatusCode: 200, Headers: map[string]string{"Content-Type": "text/plain"}, Body: "hello"}, nil
	})
}
