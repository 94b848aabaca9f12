/** `mailfleet records`: being written. */
export function recordsCommand(argv: string[]): Promise<number> {
  void argv;
  console.error('mailfleet records: not available yet');
  return Promise.resolve(2);
}
