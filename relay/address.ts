/** The domain part of an address, lower-cased (intake's sender policy and the mx route both need it). */
export function domainOf(address: string): string {
  return address.slice(address.lastIndexOf('@') + 1).toLowerCase();
}
