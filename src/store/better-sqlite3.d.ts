// The part of better-sqlite3 (the driver under @effect/sql-sqlite-node) the conversation store uses directly.
declare module "better-sqlite3" {
  namespace Sqlite {
    interface RunResult {
      readonly changes: number
    }
    interface Statement {
      run(...params: ReadonlyArray<unknown>): RunResult
    }
    interface Database {
      prepare(source: string): Statement
      pragma(source: string): unknown
      close(): void
    }
  }
  const Sqlite: new(filename: string, options?: { readonly fileMustExist?: boolean; readonly timeout?: number }) => Sqlite.Database
  export = Sqlite
}
