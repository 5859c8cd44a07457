package rendezvous_test

import (
	"context"
	"errors"
	"fmt"
	"log"
	"time"

	"github.com/ringtrain/ringtrain/collective/rendezvous"
)

func ExampleClient_WaitKeys() {
	srv, err := rendezvous.Listen("127.0.0.1:0", rendezvous.ServerConfig{Token: "job-token"})
	if err != nil {
		log.Fatal(err)
	}
	defer srv.Close()
	ctx := context.Background()
	c, err := rendezvous.Dial(ctx, srv.Addr().String(), rendezvous.ClientConfig{Token: "job-token"})
	if err != nil {
		log.Fatal(err)
	}
	defer c.Close()

	c.Set(ctx, "rank/0", []byte("10.0.0.1:4000"))
	c.Set(ctx, "rank/1", []byte("10.0.0.2:4000"))
	wctx, cancel := context.WithTimeout(ctx, 200*time.Millisecond)
	defer cancel()
	_, err = c.WaitKeys(wctx, []string{"rank/0", "rank/1", "rank/2"})
	var missing *rendezvous.MissingKeysError
	if errors.As(err, &missing) {
		fmt.Println("never arrived:", missing.Keys)
	}
	// Output: never arrived: [rank/2]
}
