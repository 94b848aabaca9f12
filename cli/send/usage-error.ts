/** A mistake on `mailfleet send`'s command line: reported with the usage text and exit code 2. */
export class UsageError extends Error {}
