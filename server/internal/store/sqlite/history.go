package sqlite

import (
	"context"
	"errors"

	"github.com/parleychat/parley/server/internal/store"
)

// History implements store.Store (not yet: the next commit).
func (s *Store) History(context.Context, string, string, store.Query) ([]store.MessageView, error) {
	return nil, errors.New("sqlite: History is not implemented yet")
}
