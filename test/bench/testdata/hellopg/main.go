// Command hellopg is the hello-world bootstrap of test/bench/testdata/hello
// plus what any function on a PostgreSQL store pays before its first
// answer: it connects to CLUSTERKEYS_STORE with pgx and runs one query.
// The cold-start bench measures it beside the store functions, as the floor
// their PostgreSQL connection sets.
package main

import (
	"context"
	"os"

	"github.com/aws/aws-lambda-go/events"
	"github.com/aws/aws-lambda-go/lambda"
	"github.com/jackc/pgx/v5"
)

func main() {
	lambda.Start(func(ctx context.Context, _ events.APIGatewayV2HTTPRequest) (events.APIGatewayV2HTTPResponse, error) {
		conn, err := pgx.Connect(ctx, os.Getenv("CLUSTERKEYS_STORE"))
		if err != nil {
			return events.APIGatewayV2HTTPResponse{}, err
		}
		defer conn.Close(context.WithoutCancel(ctx))
		var one int
		if err := conn.QueryRow(ctx, "SELECT 1").Scan(&one); err != nil {
			return events.APIGatewayV2HTTPResponse{}, err
		}
		return events.APIGatewayV2HTTPResponse{StatusCode: 200, Headers: map[string]string{"Content-Type": "text/plain"}, Body: "hello"}, nil
	})
}
