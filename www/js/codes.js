// Human sentences for every response code of docs/protocol.md §2. The UI never shows a
// bare number.

const SENTENCES = {
  0: 'Cannot reach the server: check your connection. Nothing was changed.',
  200: 'Done.',
  202: 'Your friend is offline; the message will be delivered when they log in.',
  300: 'Your friend went offline.',
  301: 'Your friend updated their profile.',
  302: 'Your friend is online.',
  303: 'Your friend request was accepted.',
  304: 'A friend removed you.',
  305: 'Your friend request was declined.',
  403: 'The server did not understand that request.',
  404: 'That does not exist on the server.',
  500: 'Something went wrong on the server. Please try again.',
  501: 'Please enter an account name.',
  502: 'Please enter a password.',
  503: 'Please enter an e-mail address (it is used if you forget your password).',
  504: 'That account name is already taken.',
  505: 'The account or the password is wrong.',
  506: 'The message could not be sent (it had no number).',
  507: 'The message could not be handed to your friend.',
  508: 'Not delivered: your friend is offline.',
  509: 'Only text can be sent.',
  510: 'Choose a friend to write to.',
  511: 'Type a message first.',
  512: 'You are not friends with this person.',
  513: 'You logged in somewhere else, so this window was signed out (too many devices at once, '
    + 'or your password was changed). Log in again to continue here.',
  514: 'Your session is missing. Please log in again.',
  515: 'Your session has expired. Please log in again.',
  516: 'Type a name to search for.',
  517: 'Your session is missing. Please log in again.',
  519: 'Choose a person first.',
  520: 'Someone wants to be your friend.',
  521: 'Give your new friend a name.',
  522: 'You are already friends.',
  523: 'That person does not exist any more.',
  524: 'Too many attempts. Please wait a moment and try again.',
  525: 'That friend request is no longer pending.',
  526: 'You cannot befriend yourself.',
  527: 'One of the fields is too long.',
  529: 'That message was already sent.',
  528: 'The account name may not contain spaces or control characters.',
};

export function sentence(code) {
  return SENTENCES[code] || 'Something unexpected happened. Please try again.';
}
