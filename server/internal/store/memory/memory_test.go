package memory_test

import (
	"testing"

	"github.com/parleychat/parley/server/internal/store"
	"github.com/parleychat/parley/server/internal/store/memory"
	"github.com/parleychat/parley/server/internal/store/storetest"
)

func TestConformance(t *testing.T) {
	open := func(*testing.T) store.Store { return memory.New() }
	storetest.Run(t, open)
	storetest.RunLog(t, open)
	storetest.RunReadState(t, open)
}
