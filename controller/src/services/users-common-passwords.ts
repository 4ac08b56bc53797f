// Common passwords refused by the password policy: the most frequent entries of public breach
// corpora (SecLists' top lists) that are 12 characters or longer, since shorter ones already fail
// the length rule. Compared in lower case. Small on purpose: it stops the obvious choices; a long
// random password (what the console suggests) is the real defence.
const list = `
123456789012 1234567890123 12345678901234 123456789123 1234567890qwerty qwertyuiopasdf
qwertyuiop123 qwerty123456 qwertyuiop12 1q2w3e4r5t6y 1q2w3e4r5t6y7u 1qaz2wsx3edc
1qaz2wsx3edc4rfv zaq12wsxcde3 q1w2e3r4t5y6 a1b2c3d4e5f6 password1234 password12345
password123456 passwordpassword password123! password@123 p@ssw0rd1234 p@ssword1234
iloveyou1234 iloveyouforever letmein12345 letmeinplease welcome12345 welcome123456
administrator admin1234567 adminadmin123 administrator1 changeme1234 changemenow!
correcthorsebatterystaple trustno1trustno1 qazwsxedcrfv
abcdefghijkl abcdefghijklm abcdefghijklmnop abc123456789 aaaaaaaaaaaa 111111111111
000000000000 123123123123 987654321098 999999999999 121212121212 112233445566
sunshine1234 football1234 baseball1234 princess1234 superman1234 starwars1234
dragon123456 monkey123456 master123456 michael12345 jennifer1234 whatever1234
qwerty12345678 asdfghjkl123 zxcvbnm12345 asdfasdfasdf qweqweqweqwe 147258369147
mypassword123 secretpassword supersecret123 passw0rdpassw0rd keel12345678 keeladmin123
`;

/** The list, lower case. */
export const commonPasswords: ReadonlySet<string> = new Set(
  list
    .split('\n')
    .flatMap((line) => line.trim().split(/\s+/))
    .filter((p) => p.length > 0),
);
