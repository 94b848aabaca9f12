/** `mailfleet suppressions`: being written. */
export function suppressionsCommand(argv: string[]): Promise<number> {
  void argv;
  console.error('mailfleet suppressions: not available yet');
  return Promise.resolve(2);
}
