package mbhttp_test

import (
	"context"
	"fmt"
	"net/http"
	"net/http/httptest"

	"github.com/mb-go/mb"
	"github.com/mb-go/mb/mbhttp"
)

type SignUp struct{ Email string }
type SignedUp struct{ Email string }

// Each request runs in one unit of work: the events of a request that
// fails are never dispatched.
func ExampleMiddleware() {
	bus := mb.New()
	mb.HandleCommandNoResult(bus, func(ctx context.Context, c SignUp) error {
		return mb.Emit(ctx, SignedUp(c))
	})
	mb.Subscribe(bus, func(ctx context.Context, e SignedUp) error {
		fmt.Println("welcome mail to", e.Email)
		return nil
	})
	mux := http.NewServeMux()
	mux.HandleFunc("POST /signup", func(w http.ResponseWriter, r *http.Request) {
		email := r.FormValue("email")
		if err := mb.Exec(r.Context(), bus, SignUp{email}); err != nil {
			http.Error(w, err.Error(), http.StatusBadRequest)
			return
		}
		if email == "" {
			http.Error(w, "no email", http.StatusInternalServerError) // rolls back
			return
		}
		w.WriteHeader(http.StatusCreated)
	})
	h := mbhttp.Middleware(bus, nil)(mux)

	for _, email := range []string{"me@example.com", ""} {
		w := httptest.NewRecorder()
		h.ServeHTTP(w, httptest.NewRequest("POST", "/signup?email="+email, nil))
		fmt.Println(w.Code)
	}
	// Output:
	// welcome mail to me@example.com
	// 201
	// 500
}
