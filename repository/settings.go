package repository

import (
	"context"
)

// Setting returns a stored setting, or ErrNotFound.
func (s *Store) Setting(ctx context.Context, key string) (string, error) {
	var st setting
	err := s.db.NewSelect().Model(&st).Where("key = ?", key).Scan(ctx)
	return st.Value, notFound(err)
}

// SettingOrInit returns the stored value of key, storing value first if the
// key is new. Concurrent callers (several nodes starting) all get the value
// that won. created tells whether this call stored it.
func (s *Store) SettingOrInit(ctx context.Context, key, value string) (stored string, created bool, err error) {
	res, err := s.db.NewInsert().Model(&setting{Key: key, Value: value}).
		On("CONFLICT (key) DO NOTHING").Exec(ctx)
	if err != nil {
		return "", false, err
	}
	n, _ := res.RowsAffected()
	stored, err = s.Setting(ctx, key)
	return stored, n == 1, err
}
