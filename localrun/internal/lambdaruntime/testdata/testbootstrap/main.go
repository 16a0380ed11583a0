// Command testbootstrap is a Lambda bootstrap for lambdaruntime's tests. Its
// behaviour depends on the request path: /echo answers with the request,
// /crash exits mid-invocation, /sleep outlives any test timeout, /panic
// panics, /error returns a function error, /deadline says how long the
// invocation has left. With TESTBOOTSTRAP_INIT_FAIL=1 it
// reports an init error and exits, as a bootstrap whose set-up failed does.
package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"strings"
	"time"

	"github.com/aws/aws-lambda-go/events"
	"github.com/aws/aws-lambda-go/lambda"

	"github.com/clusterkeys/clusterkeys/pkg/lambdahttp"
)

func main() {
	if os.Getenv("TESTBOOTSTRAP_INIT_FAIL") == "1" {
		url := "http://" + os.Getenv("AWS_LAMBDA_RUNTIME_API") + "/2018-06-01/runtime/init/error"
		resp, err := http.Post(url, "application/json", strings.NewReader(`{"errorType":"ConfigError","errorMessage":"no config"}`))
		if err == nil {
			resp.Body.Close()
		}
		os.Exit(3)
	}
	pid := os.Getpid()
	echo := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(r.Body)
		w.Header().Set("Content-Type", "text/plain")
		fmt.Fprintf(w, "%s %s pid=%d body=%s", r.Method, r.URL.RequestURI(), pid, b)
	})
	adapter := lambdahttp.Handler(echo)
	lambda.Start(func(ctx context.Context, ev events.APIGatewayV2HTTPRequest) (events.APIGatewayV2HTTPResponse, error) {
		switch ev.RawPath {
		case "/crash":
			os.Exit(2)
		case "/sleep":
			time.Sleep(time.Hour)
		case "/panic":
			panic("test panic")
		case "/error":
			return events.APIGatewayV2HTTPResponse{}, errors.New("refused by the function")
		case "/slow":
			time.Sleep(300 * time.Millisecond)
		case "/deadline":
			// aws-lambda-go sets ctx's deadline from Lambda-Runtime-Deadline-Ms.
			d, ok := ctx.Deadline()
			return events.APIGatewayV2HTTPResponse{StatusCode: 200,
				Body: fmt.Sprintf("deadline=%v remaining_ms=%d", ok, time.Until(d).Milliseconds())}, nil
		}
		return adapter(ctx, ev)
	})
}
