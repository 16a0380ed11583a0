package tlsbundle_test

import (
	"context"
	"fmt"
	"time"

	"github.com/clusterkeys/clusterkeys/pkg/tlsbundle"
)

// Every reason is reported, each with its code and the field to fix.
func ExampleValidate() {
	r := tlsbundle.Validate(context.Background(), tlsbundle.Input{
		Certificate: "not a certificate",
		Hostname:    "www.example.test",
	}, time.Now())
	fmt.Println("valid:", r.Valid)
	for _, e := range r.Errors {
		fmt.Println(e.Code, e.Field)
	}
	// Output:
	// valid: false
	// certificate_unreadable certificate
	// key_missing private_key
}
