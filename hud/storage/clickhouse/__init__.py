"""The ClickHouse backend, `store.ClickHouseRecordStore`: its SQL in `queries`, two thin
`drivers`, the reads in `store`, the outbox and its drain in `writes`."""
