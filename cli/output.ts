/** Where a command's lines go (console, or a test's collector): results to log, problems to error. */
export interface Output {
  log(line: string): void;
  error(line: string): void;
}
