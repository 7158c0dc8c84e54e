package mbfx

import (
	"fmt"
	"reflect"

	"go.uber.org/fx"

	"github.com/mb-go/mb"
)

// supply returns the option that puts vs in the value group.
func supply[T any](group string, vs []T) fx.Option {
	return fx.Provide(fx.Annotate(
		func() []T { return vs },
		fx.ResultTags(`group:"`+group+`,flatten"`),
	))
}

// as annotates constructor, which returns a T or a []T and optionally an
// error, so that what it returns joins the value group. A constructor of
// another shape becomes one that fails with an error naming it, so that
// fx.New reports the mistake where the group is used.
func as[T any](fn, group string, constructor any) any {
	elem := reflect.TypeFor[T]()
	ft := reflect.TypeOf(constructor)
	ok := ft != nil && ft.Kind() == reflect.Func && !reflect.ValueOf(constructor).IsNil()
	if ok {
		n := ft.NumOut()
		ok = (n == 1 || n == 2 && ft.Out(1) == reflect.TypeFor[error]()) &&
			(ft.Out(0) == elem || ft.Out(0) == reflect.SliceOf(elem))
	}
	if !ok {
		err := fmt.Errorf("%w: mbfx.%s takes a constructor that returns a %s or a []%s, optionally followed by an error; got %T",
			mb.ErrInvalidArgument, fn, elem, elem, constructor)
		return fx.Annotate(func() ([]T, error) { return nil, err }, fx.ResultTags(`group:"`+group+`,flatten"`))
	}
	tag := `group:"` + group + `"`
	if ft.Out(0).Kind() == reflect.Slice {
		tag = `group:"` + group + `,flatten"`
	}
	return fx.Annotate(constructor, fx.ResultTags(tag))
}
